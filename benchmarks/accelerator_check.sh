#!/usr/bin/env bash
# Runs jaxrnn's core property tests and the benchmark on an NVIDIA GPU; writes the results to files.
#
# On a fresh GPU machine with a CUDA driver (nvidia-smi works), from anywhere in the repo:
#
#     bash benchmarks/accelerator_check.sh            # full benchmark (~5 min)
#     bash benchmarks/accelerator_check.sh --quick    # < 1 min of benchmarking
#
# It creates a virtual environment (.venv-gpu), installs the CUDA build of jax
# (the version of the CPU measurements, so numbers compare), jaxrnn with its test
# extra, flax and torch (PyPI's Linux torch wheel is a CUDA build, so torch's
# nn.RNN runs cuDNN), then writes to benchmarks/results/:
#   gpu-<host>-<date>-tests.txt   pytest tests/test_cells.py on the GPU (float64 and float32)
#   gpu-<host>-<date>.md          bench.py's tables (same format as RESULTS.md)
# Environment overrides: JAX_VERSION (default 0.10.2), JAX_CUDA (cuda13 or cuda12;
# default from the driver's CUDA version), PYTHON (default python3), SKIP_TORCH=1.
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=""
if [[ "${1:-}" == "--quick" ]]; then QUICK="--quick"; fi
JAX_VERSION="${JAX_VERSION:-0.10.2}"
PYTHON="${PYTHON:-python3}"

if ! command -v nvidia-smi >/dev/null; then
  echo "accelerator_check: nvidia-smi not found; this script needs an NVIDIA GPU" >&2
  exit 1
fi
nvidia-smi
if [[ -z "${JAX_CUDA:-}" ]]; then
  # The driver's "CUDA Version: 13.0" line; CUDA 13 wheels need a CUDA 13 driver.
  driver_cuda="$(nvidia-smi | sed -n 's/.*CUDA Version: \([0-9]*\).*/\1/p' | head -1)"
  if [[ "${driver_cuda:-0}" -ge 13 ]]; then JAX_CUDA=cuda13; else JAX_CUDA=cuda12; fi
fi

"$PYTHON" -m venv .venv-gpu
# shellcheck disable=SC1091
. .venv-gpu/bin/activate
python -m pip install --quiet --upgrade pip
python -m pip install --quiet "jax[${JAX_CUDA}]==${JAX_VERSION}"
python -m pip install --quiet -e ".[test]" "jax==${JAX_VERSION}"
python -m pip install --quiet flax "jax==${JAX_VERSION}" || echo "flax not installed: skipped"
if [[ -z "${SKIP_TORCH:-}" ]]; then
  python -m pip install --quiet torch || echo "torch not installed: skipped"
fi

# JAX would otherwise take 75% of GPU memory at start-up, leaving torch little.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
python - <<'EOF'
import jax
print("jax", jax.__version__, "devices:", jax.devices())
assert jax.default_backend() == "gpu", "the CUDA build of jax did not find the GPU"
try:
    import torch
    print("torch", torch.__version__, "cuda:", torch.cuda.is_available(),
          "cudnn:", torch.backends.cudnn.version() if torch.cuda.is_available() else None)
except ImportError:
    print("torch not installed")
EOF

mkdir -p benchmarks/results
stem="benchmarks/results/gpu-$(hostname -s 2>/dev/null || echo host)-$(date -u +%Y%m%dT%H%MZ)"
# Core properties (hand BPTT == jax.grad == numpy, float64 and float32) on the GPU.
set +e
python -m pytest -q tests/test_cells.py 2>&1 | tee "${stem}-tests.txt"
tests_rc=${PIPESTATUS[0]}
set -e
# The document's numpy loops run on the CPU and say nothing about the GPU: left out.
python benchmarks/bench.py ${QUICK} --no-numpy --out "${stem}.md"
echo
echo "accelerator_check: tests exit status ${tests_rc}; results in ${stem}.md and ${stem}-tests.txt"
exit "${tests_rc}"
