#!/usr/bin/env bash
# The checks that need a CUDA GPU: the CUDA tests of the runtime (precision, channels-last,
# compiled layers, batched drags) and `dragwalk bench step` at 256 and 512 px, with the
# runtime variants side by side. Results go to $OUT (default ./gpu-out). Needs only torch,
# numpy, pillow, tqdm and pytest in the python3 that runs it. `scripts/gpu-checks.sh profile`
# runs the tests, a profile of the editor step and the compiled variants instead.
set -uo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-gpu-out}
mkdir -p "$out"
export PYTHONPATH=$PWD/backend PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
nvidia-smi -L
$py -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
timeout 150 $py -m pytest -q -p no:cacheprovider tests/test_runtime.py -k cuda 2>&1 | grep -v DEBUG | tee "$out/tests.log"
bench() {  # bench NAME SECONDS ARGS...
    local name=$1 limit=$2; shift 2
    timeout "$limit" $py -m dragwalk bench step --device cuda --json "$out/$name.json" "$@" 2>&1 \
        | grep -v DEBUG | tee "$out/$name.log"
}
if [ "${1:-}" = profile ]; then
    bench profile256 60 --ffhq-like 256 --steps 5 --profile 5
    bench compile256 200 --ffhq-like 256 --steps 20 --variants fp32+compile,fp16+cl+compile
else
    bench step256 90 --ffhq-like 256 --steps 30 --variants bf16,fp16,fp16+cl,bf16+cl --batch 8
    bench step512 90 --ffhq-like 512 --steps 20 --variants bf16,fp16,fp16+cl --batch 8
fi
