"""Imported first by the benchmark scripts: no library's idle threads spin while another runs.

The benchmark interleaves JAX, torch and numpy in one process. By default torch's
OpenMP threads and numpy's OpenBLAS threads busy-wait after each call (OpenBLAS
for about 2^28 cycles), and on a small machine they steal the cores from
whatever runs next: measured on 2 cores, JAX's forward at N,T,D,H = 8,64,32,64
took 9.1 ms right after torch and 1.8 ms right after numpy, instead of 0.23 ms.

- torch: ``OMP_WAIT_POLICY=PASSIVE``, idle OpenMP threads sleep; torch keeps
  as many threads as JAX (``torch.set_num_threads``).
- numpy: ``OPENBLAS_NUM_THREADS=1``. The document's loops call small matmuls
  (one time step each), which ran 3.6x faster on one OpenBLAS thread than on
  two here (70 vs 250 ms for the forward at 32,256,128,256); making two threads
  sleep instead (``OPENBLAS_THREAD_TIMEOUT=4``) made it 14x slower.

These must be in the environment before numpy and torch are imported; values
already set are kept.
"""

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
