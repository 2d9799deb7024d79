#!/usr/bin/env bash
# Lays out here what benchmarks/gpu_check.sh needs on a GPU machine without network (never committed):
#   .whl/  Python 3.12 wheels of the serve extras (../shared/device/prepare.sh) plus isal and python-multipart
#   .data/ FashionMNIST (../shared/device/prepare.sh)
#   .gpu/  the wrk load generator and its LuaJIT, as Debian packages to unpack there
# Then run the check with the device tool, carrying all three:
#   command: bash benchmarks/gpu_check.sh     carry: [".whl", ".data", ".gpu"]
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
bash ../shared/device/prepare.sh
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  -d .whl "isal>=1.6" "python-multipart>=0.0.9" 2>&1 | grep -v "WARNING: Location" || true
grep -qxF /.gpu/ .git/info/exclude || echo /.gpu/ >> .git/info/exclude
rm -rf .gpu && mkdir -p .gpu
(cd .gpu && apt-get download -qq wrk libluajit-5.1-2 libluajit-5.1-common)
du -sh .whl .data .gpu | sed 's/^/prepared: /'
