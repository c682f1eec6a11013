#!/usr/bin/env bash
# The GPU check, for a machine that has only torch, lightning, numpy, pandas and
# scikit-learn (no mloop install, no network):
#
#     bash benchmarks/gpu_check.sh            # ROUNDS=5 by default
#
# 1. trains the default digits CNN and fails unless its test accuracy reaches 0.97
#    (time-to-accuracy printed);
# 2. mloop's Lightning path against a plain PyTorch loop for the digits CNN;
# 3. the same for the ResNet-style net on synthetic 32x32 RGB images, batch 512, bf16
#    (samples/s, ratio, TFLOP/s);
# 4. the BERT-style text encoder with train.strategy fsdp beside auto (GPUs only);
# 5. MiniLM (../shared/pretrained) fine-tuned on SMS through the hf family in bf16: samples/s
#    and the time to spam F1 0.957 (needs transformers and tokenizers: carry their wheels,
#    else it says skipped and why).
# Environment: PYTHON, ROUNDS, CNN_EPOCHS, RESNET_SAMPLES, RESNET_EPOCHS, RESNET_BATCH,
# RESNET_PRECISION shrink or change the runs (the tests use them on the CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
ROUNDS=${ROUNDS:-5}

$PY -c '
import lightning, numpy, pandas, sklearn, torch
gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU: CPU only"
print(f"torch {torch.__version__}, lightning {lightning.__version__}, {gpu}")
'
$PY benchmarks/train_throughput.py --model cnn --batch 64 --epochs "${CNN_EPOCHS:-5}" \
    --rounds "$ROUNDS" --min-accuracy 0.97
$PY benchmarks/train_throughput.py --model resnet --image-size 32 --channels 3 \
    --samples "${RESNET_SAMPLES:-50000}" --batch "${RESNET_BATCH:-512}" \
    --precision "${RESNET_PRECISION:-bf16-mixed}" --epochs "${RESNET_EPOCHS:-2}" \
    --rounds "$ROUNDS"
# 4. the text encoder under Lightning's fsdp strategy beside auto (GPUs only; says so else)
$PY benchmarks/text_fsdp.py --rounds "$ROUNDS" --samples "${TEXT_SAMPLES:-20000}"
# 5. a pretrained encoder fine-tuned in bf16 (skipped, with the reason, without transformers)
$PY benchmarks/hf_finetune.py --epochs "${HF_EPOCHS:-3}"
