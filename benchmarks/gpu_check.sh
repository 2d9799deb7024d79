#!/usr/bin/env bash
# Every GPU check of the project in one run (under 8 minutes on an H100):
#   1. the CUDA-marked tests (pytest -m cuda)
#   2. the serving comparison with DEVICE=cuda: the forward limit, latentlab against the naive app, the
#      overload burst (admission by predicted wait), and the request path's own cost (request_cost.py)
#   3. the training speed: seconds per epoch, eager against whole-step CUDA graphs, fp32 and bf16
# Prepare here with `bash benchmarks/gpu_prepare.sh`, then run it on the GPU machine with .whl, .data and
# .gpu carried. Without CUDA it runs the same steps on the CPU (to try the script), and says so.
# Output: the log on stdout, and $OUT/gpu_check.log when OUT is set.
set -uo pipefail
cd "$(dirname "$0")/.."
log=${OUT:-/tmp}/gpu_check.log
exec > >(tee "$log") 2>&1

if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site:$PWD
fi
if [ -d .data/fashion-mnist ]; then
  export DATA_DIR=$PWD/.data/fashion-mnist FASHION_MNIST_DIR=$PWD/.data/fashion-mnist
fi
if ! command -v wrk >/dev/null && [ -d .gpu ]; then
  for deb in .gpu/*.deb; do dpkg -x "$deb" /tmp/wrk-root; done
  export PATH=/tmp/wrk-root/usr/bin:$PATH LD_LIBRARY_PATH=/tmp/wrk-root/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
fi
export PYTHONUNBUFFERED=1
python=${PYTHON:-python3}
device=$($python -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")
echo "== $(date -u +%FT%TZ) on $device: $($python -c "import torch; print(torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU')")"
[ "$device" = cuda ] || echo "!! no CUDA here: the CUDA tests skip and the benchmark runs on the CPU"
status=0

echo "== 1. CUDA-marked tests"
$python -m pytest -q -m cuda -p no:cacheprovider tests || status=1

echo "== 2. serving: latentlab vs naive, DEVICE=$device"
store=$(mktemp -d)
for arch in gan dcgan; do
  $python -m trainer --arch $arch --epochs 1 --limit 4096 --out "$store" --device "$device" \
    --no-evaluate --no-progress >/dev/null 2>"$store/train-$arch.log" || { cat "$store/train-$arch.log"; status=1; }
done
$python benchmarks/serve_compare.py --store "$store" --model dcgan --device "$device" --runs 3 --seconds 5 --burst || status=1
DEVICE=$device $python benchmarks/request_cost.py --runs 3 --seconds 3 || status=1

echo "== 3. training speed on $device"
if [ "$device" = cuda ]; then
  $python benchmarks/train_speed.py --epochs 3 || status=1
else
  $python benchmarks/train_speed.py --epochs 2 --limit 2048 || status=1
fi

echo "== done, status $status"
exit $status
