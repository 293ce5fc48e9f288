#!/usr/bin/env bash
# One GPU slot, one call: the speed measurements of issue 23, then the KD-DLGAN slot of issue 24
# with the time left. Run from the repository root on the GPU machine (docs/gpu.md):
#   bash benchmarks/gpu_slot.sh OUT_DIR [END_SECONDS]
# carrying .whl (open_clip_torch, torch-fidelity, ftfy, wcwidth), .carry/slot (the data zip and the
# teacher; `python benchmarks/kd_slot.py bundle`) and .carry/anchors (NVlabs stylegan2-ada-pytorch
# and KD_DLGAN checkouts, for benchmarks/anchors.py). Everything printed goes to OUT/slot.log too;
# OUT gets at most 8 files (slot.log, slot.json, six G_ema files).
set -u
OUT=${1:?usage: gpu_slot.sh OUT_DIR [END_SECONDS]}
END_S=${2:-560}  # the whole command ends this many seconds after it starts
T0=$(date +%s)
mkdir -p "$OUT"
LOG="$OUT/slot.log"
export PYTHONUNBUFFERED=1 KDGAN_OFFLINE=1
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
export PYTHONPATH="$PWD/src:$PWD/benchmarks:/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
left() { echo $(( END_S - ($(date +%s) - T0) )); }
step() {  # step LABEL TIMEOUT_S CMD...: run with a timeout, output to the log, never stop the script
  local label=$1 limit=$2; shift 2
  echo "===== $label (limit ${limit}s, $(left) s left) =====" | tee -a "$LOG"
  timeout "$limit" "$@" 2>&1 | tee -a "$LOG"
  echo "===== $label: exit ${PIPESTATUS[0]} =====" | tee -a "$LOG"
}
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version())"
} 2>&1 | tee -a "$LOG"
if [ "${SKIP_SPEED:-0}" != 1 ]; then
  step "FIR derivatives, 256 px D / G (fp32)" 75 python3 benchmarks/fir_derivatives.py --device cuda \
    --resolution 256 --channel-base 32768 --batch 16 --repeats 3
  step "bias + lrelu, 256 px main step (fp32)" 45 python3 benchmarks/bias_act.py --device cuda \
    --resolution 256 --channel-base 32768 --batch 16 --repeats 3
  if [ -d .carry/anchors ]; then
    step "side by side with NVlabs and KD_DLGAN" 330 python3 benchmarks/anchors.py --device cuda \
      --nvlabs .carry/anchors/stylegan2-ada-pytorch --kddlgan .carry/anchors/KD_DLGAN --json /tmp/anchors.json
  fi
fi
BUDGET=$(python3 -c "print(round(max(1.0, ($(left) - 5) / 60), 2))")
echo "===== KD-DLGAN slot, ${BUDGET} min =====" | tee -a "$LOG"
# kd_slot.py writes its own lines into slot.log: its output is not tee'd there again
timeout $(( $(left) + 10 )) python3 benchmarks/kd_slot.py run --out "$OUT" --budget-min "$BUDGET" ${SLOT_ARGS:-}
echo "===== KD-DLGAN slot: exit $? =====" | tee -a "$LOG"
ls -la "$OUT" | tee -a "$LOG"
