#!/usr/bin/env bash
# Run on the GPU machine, in the repo root, with the wheels of fetch_wheels.sh carried along:
#   bash builders/device/run_check.sh [WHEELS] [OUT]
# Installs the carried wheels into a private folder (no index: nothing is fetched), puts the
# package on PYTHONPATH without installing it, runs `afg bench-build --what device --device cuda`
# and writes device.json and device.log to OUT (default $OUT, else ./device-out).
# AFG_DEVICE_INSTALL_ONLY=1 stops after the install and lists what it installed (tests use it).
set -euo pipefail
cd "$(dirname "$0")/../.."
wheels="${1:-.device-wheels}"
out="${2:-${OUT:-device-out}}"
python="${PYTHON:-python3}"
site="${AFG_DEVICE_SITE:-/tmp/afg-device-site}"
mkdir -p "$out" "$site"
exec > >(tee "$out/device.log") 2>&1
started=$(date +%s)
# pyarrow only where the device's own is older than datasets needs (>= 24)
keep_pyarrow=$("$python" -c 'import pyarrow as p; print(int(p.__version__.split(".")[0]) >= 24)' \
    2>/dev/null || echo False)
install=()
for wheel in "$wheels"/*.whl; do
    if [[ "$keep_pyarrow" == True && "$(basename "$wheel")" == pyarrow-* ]]; then continue; fi
    install+=("$wheel")
done
PIP_CONFIG_FILE=/dev/null "$python" -m pip install -q --no-index --no-deps --no-compile \
    --no-cache-dir --upgrade --target "$site" "${install[@]}"
export PYTHONPATH="$site:$PWD${PYTHONPATH:+:$PYTHONPATH}"
echo "installed ${#install[@]} wheels in $(( $(date +%s) - started )) s"
if [[ "${AFG_DEVICE_INSTALL_ONLY:-0}" == 1 ]]; then
    PIP_CONFIG_FILE=/dev/null "$python" -m pip list --path "$site" --format freeze
    exit 0
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
PYTHONUNBUFFERED=1 "$python" -m afg_datasets.cli bench-build --what device \
    --device "${AFG_DEVICE:-cuda}" --json >"$out/device.json"
"$python" - "$out/device.json" <<'PY'
import json, sys
from rich.console import Console
from afg_datasets.printers import device_bench
device_bench(json.load(open(sys.argv[1]))["device"], Console(width=140))
PY
echo "device check done in $(( $(date +%s) - started )) s"
