#!/usr/bin/env bash
# On a machine with an NVIDIA GPU and TensorRT 10.x or 11.x: build FP32 / FP16 / INT8 engines from one ResNet50,
# validate each against the FP32 ONNX, bench each (GPU compute and copies separately), print one table.
#
#   benchmarks/gpu_check.sh [WORK_DIR]        (default runs/gpu_check; stops after LIMIT, default 45m)
#   MODEL=path/to/model.onnx DATA=path/to/data benchmarks/gpu_check.sh   to use your own model and data
#
# Without a model it exports a random-weight 224x224 ResNet50 (numbers are about speed and parity, not
# accuracy); without data it draws the built-in synthetic set. FP16 is built from the FP16 ONNX rtk makes and
# checks on the CPU first (model.fp16.onnx beside the engine), the same way on TensorRT 10 and 11.
set -euo pipefail

if [ -z "${GPU_CHECK_LIMITED:-}" ]; then
    GPU_CHECK_LIMITED=1 exec timeout --foreground "${LIMIT:-45m}" bash "$0" "$@"
fi

RTK=${RTK:-rtk}
PY=${PYTHON:-python}
WORK=${1:-runs/gpu_check}
SIZE=${SIZE:-224}

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L >/dev/null 2>&1; then
    echo "gpu_check: no NVIDIA GPU here (nvidia-smi finds none); run this on a GPU machine" >&2
    exit 2
fi
# rtk's own check: TensorRT and cuda-python importable and supported, the driver new enough, a GPU present
"$PY" -c "from toolkit.backends.tensorrt import import_tensorrt, require_gpu; import_tensorrt(); require_gpu()" \
    || { echo "gpu_check: TensorRT cannot run here (the line above says why); see README: TensorRT" >&2; exit 2; }
"$RTK" doctor

mkdir -p "$WORK"
DATA=${DATA:-$WORK/data}
if [ ! -d "$DATA" ]; then
    "$RTK" data synth "$DATA" --classes 10 --per-class 20 --val-per-class 20 --size "$SIZE"
fi
MODEL=${MODEL:-$WORK/model.onnx}
if [ ! -f "$MODEL" ]; then
    "$PY" - "$DATA" "$WORK/random.pt" "$SIZE" <<'PYEOF'
import sys
from pathlib import Path
from toolkit.data import split_dir
from toolkit.models import load_model, save_checkpoint

val = split_dir(Path(sys.argv[1]), "val")
names = sorted(p.name for p in val.iterdir() if p.is_dir())
model, meta = load_model("random", class_names=names, num_classes=len(names), input_size=int(sys.argv[3]))
save_checkpoint(Path(sys.argv[2]), model, meta)
PYEOF
    "$RTK" export "$WORK/random.pt" -o "$MODEL" --data "$DATA"
fi

INT8_ONNX=$WORK/model.trt-int8.onnx
if [ ! -f "$INT8_ONNX" ]; then
    "$RTK" quantize "$MODEL" --int8 --target tensorrt --calib "$DATA" --subset 64 -o "$INT8_ONNX"
fi

VAL=$DATA/val
[ -d "$VAL" ] || VAL=$DATA
"$RTK" compile "$INT8_ONNX" --target tensorrt --check-only --json "$WORK/check.json"
for precision in fp32 fp16 int8; do
    source=$MODEL
    [ "$precision" = int8 ] && source=$INT8_ONNX
    engine=$WORK/model.$precision.engine
    "$RTK" compile "$source" --target tensorrt --precision "$precision" -o "$engine" \
        --min-batch 1 --opt-batch 8 --max-batch 32 --timing-cache "$WORK/timing.cache" --json "$WORK/compile.$precision.json"
    "$RTK" validate "$engine" --data "$VAL" --reference "$MODEL" --json "$WORK/validate.$precision.json"
    "$RTK" bench "$engine" --batch 1,8,32 --seconds 5 --json "$WORK/bench.$precision.json"
done

PYTHONPATH="$(dirname "$0")/..${PYTHONPATH:+:$PYTHONPATH}" "$PY" -m benchmarks.gpu_table "$WORK"
