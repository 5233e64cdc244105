#!/usr/bin/env bash
# benchmarks/gpu_check.py on a machine without network where torch, timm, Lightning, torchmetrics and safetensors are
# installed: einops comes from gpu_wheels/ (pip download --only-binary=:all: --no-deps einops -d gpu_wheels), the
# package from src/ (PYTHONPATH; no pip install, which would try to fetch its other dependencies).
#   bash benchmarks/gpu_check.sh [OUT_DIR [gpu_check.py options]]   # writes OUT_DIR/gpu_check.md (default: runs/)
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-runs}"
mkdir -p "$out"
py="$(command -v python || command -v python3)"
"$py" -c "import einops" 2>/dev/null || "$py" -m pip install --no-deps --no-index -q gpu_wheels/einops-*.whl
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | tee "$out/gpu.txt"
PYTHONPATH="$PWD/src" "$py" benchmarks/gpu_check.py --out "$out/gpu_check.md" "${@:2}" 2>&1 | tee "$out/gpu_check.log"
exit "${PIPESTATUS[0]}"
