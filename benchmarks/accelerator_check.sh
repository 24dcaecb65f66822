#!/usr/bin/env bash
# Runs jaxrnn's core property tests and the benchmark on an NVIDIA GPU; writes the results to files.
#
# On a GPU machine with a CUDA driver (nvidia-smi works), from anywhere in the repo:
#
#     bash benchmarks/accelerator_check.sh                       # full benchmark (~5 min)
#     bash benchmarks/accelerator_check.sh --quick               # < 1 min of benchmarking
#     bash benchmarks/accelerator_check.sh --installed --quick   # offline: the present CUDA jax
#
# Two ways to get a CUDA jax:
# - online (the default when no CUDA jax is already there): creates a virtual
#   environment (.venv-gpu), installs the CUDA build of jax (the version of the CPU
#   measurements, so numbers compare), jaxrnn with its test extra, flax and torch
#   (PyPI's Linux torch wheel is a CUDA build, so torch's nn.RNN runs cuDNN);
# - installed (--installed, or automatically when `$PYTHON -c "import jax"` already
#   finds a GPU backend): no venv and no pip, for an offline machine whose python
#   already has a CUDA jax, pytest and hypothesis (flax and torch are used if
#   present); jaxrnn is imported from src/ (PYTHONPATH=src). Its jax version is
#   whatever that python has, so it may differ from the CPU measurements'.
# Both then write to $RESULTS_DIR (default benchmarks/results, relative to the repo root):
#   <name>-env.txt     the versions it ran with (python, jax, jaxlib, CUDA plugin,
#                      flax, torch, CUDA, cuDNN) and jax.print_environment_info()
#   <name>-tests.txt   pytest tests/test_cells.py on the GPU (float64 and float32)
#   <name>.md          bench.py's tables (same format as RESULTS.md)
# where <name> is $RESULTS_NAME (default gpu-<host>-<date>).
# Environment overrides: PYTHON (default python3), RESULTS_DIR, RESULTS_NAME,
# TESTS_TIMEOUT (seconds; stops pytest with SIGINT after that long, so the benchmark
# still runs; default no limit), PYTEST_ARGS (extra pytest arguments, e.g. -x),
# HYPOTHESIS_PROFILE (dev, ci, thorough: see tests/conftest.py); online path only:
# JAX_VERSION (default 0.10.2), JAX_CUDA (cuda13 or cuda12; default from the
# driver's CUDA version), SKIP_TORCH=1.
# Exit status: pytest's (124 if TESTS_TIMEOUT stopped it), or the benchmark's if that failed.
set -euo pipefail
cd "$(dirname "$0")/.."

QUICK=""
INSTALLED=""
for arg in "$@"; do
  case "$arg" in
    --quick) QUICK="--quick" ;;
    --installed) INSTALLED=1 ;;
    *) echo "accelerator_check: unknown argument $arg (use --quick, --installed)" >&2; exit 2 ;;
  esac
done
JAX_VERSION="${JAX_VERSION:-0.10.2}"
PYTHON="${PYTHON:-python3}"
RESULTS_DIR="${RESULTS_DIR:-benchmarks/results}"
RESULTS_NAME="${RESULTS_NAME:-gpu-$(hostname -s 2>/dev/null || echo host)-$(date -u +%Y%m%dT%H%MZ)}"

if ! command -v nvidia-smi >/dev/null; then
  echo "accelerator_check: nvidia-smi not found; this script needs an NVIDIA GPU" >&2
  exit 1
fi
nvidia-smi

# JAX would otherwise take 75% of GPU memory at start-up, leaving torch little.
export XLA_PYTHON_CLIENT_PREALLOCATE=false

if [[ -z "$INSTALLED" ]] \
  && "$PYTHON" -c "import jax; assert jax.default_backend() == 'gpu'" >/dev/null 2>&1; then
  echo "accelerator_check: $PYTHON already has a CUDA jax: using it (no venv, no pip)"
  INSTALLED=1
fi

if [[ -n "$INSTALLED" ]]; then
  export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}"
  "$PYTHON" -c "import pytest, hypothesis" || {
    echo "accelerator_check: --installed needs pytest and hypothesis in $PYTHON" >&2
    exit 1
  }
else
  if [[ -z "${JAX_CUDA:-}" ]]; then
    # The driver's "CUDA Version: 13.0" line; CUDA 13 wheels need a CUDA 13 driver.
    driver_cuda="$(nvidia-smi | sed -n 's/.*CUDA Version: \([0-9]*\).*/\1/p' | head -1)"
    if [[ "${driver_cuda:-0}" -ge 13 ]]; then JAX_CUDA=cuda13; else JAX_CUDA=cuda12; fi
  fi
  "$PYTHON" -m venv .venv-gpu
  # shellcheck disable=SC1091
  . .venv-gpu/bin/activate
  PYTHON=python
  python -m pip install --quiet --upgrade pip
  python -m pip install --quiet "jax[${JAX_CUDA}]==${JAX_VERSION}"
  python -m pip install --quiet -e ".[test]" "jax==${JAX_VERSION}"
  python -m pip install --quiet flax "jax==${JAX_VERSION}" || echo "flax not installed: skipped"
  if [[ -z "${SKIP_TORCH:-}" ]]; then
    python -m pip install --quiet torch || echo "torch not installed: skipped"
  fi
fi

mkdir -p "$RESULTS_DIR"
stem="${RESULTS_DIR}/${RESULTS_NAME}"
"$PYTHON" - <<'EOF' 2>&1 | tee "${stem}-env.txt"
import importlib.metadata as md
import platform

import jax

print("python", platform.python_version(), platform.machine())
for dist in ("jax", "jaxlib", "jax-cuda13-plugin", "jax-cuda13-pjrt",
             "jax-cuda12-plugin", "jax-cuda12-pjrt", "flax", "numpy", "hypothesis"):
    try:
        print(dist, md.version(dist))
    except md.PackageNotFoundError:
        pass
import jaxrnn

print("jaxrnn", getattr(jaxrnn, "__version__", "?"), "from", jaxrnn.__file__)
print("jax devices:", jax.devices())
assert jax.default_backend() == "gpu", "the CUDA build of jax did not find the GPU"
try:
    import torch
    cuda = torch.cuda.is_available()
    print("torch", torch.__version__, "cuda:", cuda, "torch.version.cuda:", torch.version.cuda,
          "cudnn:", torch.backends.cudnn.version() if cuda else None,
          "device:", torch.cuda.get_device_name(0) if cuda else None)
except ImportError:
    print("torch not installed")
print()
jax.print_environment_info()
EOF

# Core properties (hand BPTT == jax.grad == numpy, float64 and float32) on the GPU.
pytest_cmd=("$PYTHON" -m pytest -q tests/test_cells.py)
# shellcheck disable=SC2206  # PYTEST_ARGS is split on purpose
pytest_cmd+=(${PYTEST_ARGS:-})
if [[ -n "${TESTS_TIMEOUT:-}" ]]; then
  pytest_cmd=(timeout -s INT -k 30 "$TESTS_TIMEOUT" "${pytest_cmd[@]}")
fi
set +e
"${pytest_cmd[@]}" 2>&1 | tee "${stem}-tests.txt"
tests_rc=${PIPESTATUS[0]}
# The document's numpy loops run on the CPU and say nothing about the GPU: left out.
"$PYTHON" benchmarks/bench.py ${QUICK} --no-numpy --out "${stem}.md"
bench_rc=$?
set -e
echo
echo "accelerator_check: tests exit status ${tests_rc}, benchmark exit status ${bench_rc};" \
  "results in ${stem}.md, ${stem}-tests.txt and ${stem}-env.txt"
if [[ "$tests_rc" -ne 0 ]]; then exit "$tests_rc"; fi
exit "$bench_rc"
