#!/usr/bin/env bash
# benchmarks/gpu.py on a GPU machine that has PyTorch and JAX with CUDA but no TensorFlow, no
# Keras and no internet. Keras, pydantic and their few missing dependencies travel as wheels
# in .gpu-wheels/ (ignored by git), fetched beforehand on any machine with pip:
#
#   for v in 3.11 3.12 3.13; do pip download --no-deps --only-binary=:all: --python-version $v \
#     --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 \
#     -d .gpu-wheels optree==0.20.0 pydantic-core==2.50.5; done
#   pip download --no-deps -d .gpu-wheels keras==3.15.1 namex pydantic==2.14.4 annotated-types \
#     typing-inspection typing-extensions
#
# Usage: bash benchmarks/gpu_device.sh [gpu.py options]; results and logs go to $OUT
# (default /tmp/gpu-out). GPU_BUDGET (seconds, default 300) bounds the measurements.
set -u
out=${OUT:-/tmp/gpu-out}
budget=${GPU_BUDGET:-300}
mkdir -p "$out"
{
    python3 --version
    python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
    python3 -c "import jax; print('jax', jax.__version__, jax.devices())"
    nvidia-smi
} 2>&1 | tee "$out/environment.txt"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/roicast-site \
    --find-links .gpu-wheels keras namex optree pydantic pydantic-core annotated-types \
    typing-inspection typing-extensions 2>&1 | tee -a "$out/environment.txt"
export PYTHONPATH="/tmp/roicast-site:$PWD/lib" PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
timeout $((budget + 60)) python3 benchmarks/gpu.py --budget "$budget" "$@" 2>&1 | tee "$out/gpu.log"
cp reports/benchmarks/gpu*.json reports/benchmarks/gpu*.md "$out/"
