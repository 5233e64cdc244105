#!/usr/bin/env bash
# benchmarks/gpu_check.py on a machine without network where torch, timm, Lightning, torchmetrics and safetensors are
# installed: einops comes from gpu_wheels/ (pip download --only-binary=:all: --no-deps einops -d gpu_wheels), the
# package from src/ (PYTHONPATH; no pip install, which would try to fetch its other dependencies). The scene sections
# read real data from the checkout's shared/data (../shared does not travel): before the run, copy
#   rasterio_testdata/tests/data/cogeo.tif, sen1floods11_samples/sample_data/S1/ and
#   sen1floods11_samples/cloudtostreet_official_sample/S2/Spain_7370579_S2Hand.tif
# from ../shared/data into shared/data (about 21 MB), and rasterio with its dependencies into gpu_wheels/
# (pip download --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 rasterio -d gpu_wheels).
#   bash benchmarks/gpu_check.sh [OUT_DIR [gpu_check.py options]]   # writes OUT_DIR/gpu_check.md (default: runs/)
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-runs}"
mkdir -p "$out"
py="$(command -v python || command -v python3)"
"$py" -c "import einops" 2>/dev/null || "$py" -m pip install --no-deps --no-index -q gpu_wheels/einops-*.whl
if ! "$py" -c "import rasterio" 2>/dev/null && compgen -G "gpu_wheels/rasterio-*.whl" >/dev/null; then
  "$py" -m pip install --no-index --find-links gpu_wheels -q rasterio  # its dependencies from the same folder
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | tee "$out/gpu.txt"
PYTHONPATH="$PWD/src" "$py" benchmarks/gpu_check.py --out "$out/gpu_check.md" "${@:2}" 2>&1 | tee "$out/gpu_check.log"
exit "${PIPESTATUS[0]}"
