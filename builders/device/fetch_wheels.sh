#!/usr/bin/env bash
# Run on a machine with pip access (this CPU machine): fetch exactly the packages that the GPU
# machine's image lacks, as cp312 manylinux x86_64 wheels, into WHEELS (default .device-wheels
# at the repo root, which git ignores). Nothing the device already has is fetched, except
# pyarrow, which run_check.sh installs only where the device's own is older than datasets needs.
# Versions are the ones this project is tested with; the folder stays well under 64 MiB.
set -euo pipefail
cd "$(dirname "$0")/../.."
wheels="${1:-.device-wheels}"
python="${PYTHON:-python3}"
mkdir -p "$wheels"
rm -f "$wheels"/*.whl
binary=(
    datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 webdataset==1.0.2 braceexpand==0.1.7
    pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
    orjson==3.13.0 tenacity==9.2.1 pyarrow==26.0.1 torchattacks==3.3.0
)
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64; do
    platforms+=(--platform "$p")
done
"$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${platforms[@]}" -d "$wheels" "${binary[@]}"
# advertorch 0.2.3 is published as a source archive only: build its pure-Python wheel here
"$python" -m pip wheel -q --no-deps -w "$wheels" advertorch==0.2.3
ls -l "$wheels"
du -sh "$wheels"
