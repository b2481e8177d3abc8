#!/usr/bin/env bash
# Train the bundled checkpoints (default preset: 64^3 @ 2 mm) and install them into
# src/lsdebm/checkpoints/ (only the .safetensors; the per-epoch CSV and the optimiser sidecar
# stay in $RUNS, default outputs/bundled/).
#
# Usage: scripts/train_bundled.sh [STEP...]   (STEP in lsdebm vae lebm reconnet slabnet; default: all; and the
#        optional slabnet-refine, after slabnet, and lsdebm-finetune, which are not installed)
#
# Data: the shipped real vertebra masks (src/lsdebm/realdata, `split=train`: 4 VerSe subjects,
# T10-L5) mixed with phantoms, 60 % real, in a bank of 400 pairs made on the fly (rotation
# +-15 deg, scale +-10 %, elastic warp, left-right flip, then the thick-slice simulator over
# every plane, 2.5-7.5 mm slabs; 5 % of the bank re-drawn every epoch), cropped in each
# vertebra's own pose frame. Validation during training: 20 pairs of the real `val` subjects
# (never trained on). The phantom test set (seed 90000+) is never used here.
# Each step is ONE `lsdebm train` command capped at 40 minutes of training (LSD-EBM: 38;
# --max-minutes; the cosine learning-rate decay of the default preset follows that wall-time budget, so the run
# ends its decay on time). Precision: AMP=off (default, fp32). AMP=bf16 helps only on CPUs with
# AVX512-BF16/AMX (~1.7x there); on a CPU without them (AVX2 only) it is emulated and ~50x slower.
# On the 2-core machine the four were trained as two lanes side by side, one thread each:
#     scripts/train_bundled.sh reconnet & scripts/train_bundled.sh lsdebm & wait
#     scripts/train_bundled.sh vae & scripts/train_bundled.sh lebm & wait
# On a GPU (one card, 16 cores), the four side by side, each with 3 processes drawing pairs, each
# capped at MINUTES; the bundled ReconNet, VAE, LSD-EBM and LEBM are such a run (session 13, an H200,
# 5 min each: 20-33 epochs; LEBM bundled in session 14, chosen on phantom and real validation; docs/training.md):
#     export DEVICE=cuda AMP=auto WORKERS=3 MINUTES=5
#     for m in reconnet lsdebm vae lebm; do scripts/train_bundled.sh $m & done; wait
# Environment: DEVICE (cpu), THREADS (1), WORKERS (0: pairs drawn in the training process),
# AMP (off), MINUTES (each step's cap; default 40/38/35/35/44 as above), LEBM_SIGMA, BANK_CACHE (a folder: the
# four share one first draw of the bank, `--bank-cache`), RUNS, DEST, LSDEBM, PYTHON.
set -euo pipefail
cd "$(dirname "$0")/.."
LSDEBM=${LSDEBM:-.venv/bin/lsdebm}
RUNS=${RUNS:-outputs/bundled}
DEST=${DEST:-src/lsdebm/checkpoints}
COMMON=(--preset default --data bundled --real-fraction 0.6 --pairs 400 --redraw 0.05 --data-seed 1000
        --val-phantoms 20 --val-seed 2000 --device "${DEVICE:-cpu}" --threads "${THREADS:-1}" --workers "${WORKERS:-0}"
        ${BANK_CACHE:+--bank-cache "$BANK_CACHE"}
        --seed 0 --batch-size 4 --amp "${AMP:-off}" --overwrite)

CONSISTENCY_REASON="real val split (11 vertebrae of 3 subjects, sagittal+axial 3/5/7 mm, 66 cases): ReconNet Dice 0.9151 raw -> 0.9265 projection alone, 0.9291 with shape interpolation x2 (worse than raw on 1/66)"
GUIDED_REASON="real val split (22 cases, 5 mm): ReconNet+LSD-EBM 0.7616 unguided without projection, 0.9240 projection + interpolation, 0.9243 guided lambda 1, 0.9251 guided lambda 10 (4 steps); raw 0.9144"
# LEBM's test-time reference scale depends on how far its training got (docs/training.md, LEBM): a CPU run
# (8 epochs) needs the tempered sigma 8, the GPU run (20 epochs, bundled since session 14) does best with 1.
case "${DEVICE:-cpu}" in
  cpu) LEBM_SIGMA=${LEBM_SIGMA:-8.0}
       LEBM_REASON="validation pipeline (outputs/valset, seed 2000): ReconNet+LEBM 0.853 at reference sigma 8 and 80 steps vs 0.811 at sigma 1 and 150 steps; raw input 0.822; session 14, the session-4 CPU LEBM on 40 phantoms of seed 2000: sigma 1/2/4/8 0.245/0.465/0.434/0.455" ;;
  *)   LEBM_SIGMA=${LEBM_SIGMA:-1.0}
       LEBM_REASON="session 14, chosen on both validation sets: phantom validation (seed 2000, 40 cases) ReconNet+LEBM 0.741 at sigma 1 vs 0.735 at sigma 8; real val split 5 mm (22 cases) 0.9373 vs 0.9346; 80 posterior steps" ;;
esac
if ! [[ "$LEBM_SIGMA" =~ ^[0-9]+([.][0-9]+)?$ ]] || [[ "$LEBM_SIGMA" =~ ^0+([.]0+)?$ ]]; then
  echo "LEBM_SIGMA=$LEBM_SIGMA: expected a positive number such as 1.0 or 8.0 (refused before any training)" >&2
  exit 2
fi

SLAB_WEIGHT=2.0
SLAB_REASON="real val split (11 vertebrae of 3 unseen subjects, sagittal+axial 3/5/7 mm, 66 cases), ReconNet default output step: Dice 0.9152 raw; classical interpolation x2 0.9288; SlabNet weight 0.5/1/1.5/2: 0.9342/0.9350/0.9352/0.9353 (worse than raw on 2/0/0/0 cases); 2 = the classical interpolation's weight, the differences above 0.5 are within noise"

same_output() {  # the ReconNet default's measurement-aware output, so every row ends the same way
  "${PYTHON:-.venv/bin/python}" scripts/set_sampling.py "$1" "$1" --overwrite --set consistency.projection=1.0 \
    --set consistency.interpolation=2.0 --reason "the same output consistency as the ReconNet default: $CONSISTENCY_REASON"
}

train_model() {
  case "$1" in
    reconnet) "$LSDEBM" train --model reconnet "${COMMON[@]}" --lr 1e-3 --epochs 150 --max-minutes ${MINUTES:-40} \
                --val-every 2 --out "$RUNS/reconnet-default.safetensors"
              # measurement-aware output defaults chosen on the real val split (docs/real-anatomy.md)
              "${PYTHON:-.venv/bin/python}" scripts/set_sampling.py "$RUNS/reconnet-default.safetensors" \
                "$RUNS/reconnet-default.safetensors" --overwrite --set consistency.projection=1.0 \
                --set consistency.interpolation=2.0 --reason "$CONSISTENCY_REASON" ;;
    lsdebm)   "$LSDEBM" train --model lsdebm "${COMMON[@]}" --lr 1e-3 --kl-weight 1.0 --set langevin.recon_steps=2 \
                --epochs 150 --max-minutes ${MINUTES:-40} --val-every 5 --out "$RUNS/lsdebm-default.safetensors"
              "${PYTHON:-.venv/bin/python}" scripts/set_sampling.py "$RUNS/lsdebm-default.safetensors" \
                "$RUNS/lsdebm-default.safetensors" --overwrite --set consistency.weight=10.0 \
                --set consistency.steps=4 --set consistency.projection=1.0 --set consistency.interpolation=2.0 \
                --reason "$GUIDED_REASON" ;;
    vae)      "$LSDEBM" train --model vae "${COMMON[@]}" --lr 1e-3 --kl-weight 1.0 --epochs 150 --max-minutes ${MINUTES:-35} \
                --val-every 2 --out "$RUNS/vae-default.safetensors"
              same_output "$RUNS/vae-default.safetensors" ;;
    lebm)     "$LSDEBM" train --model lebm "${COMMON[@]}" --lr 1e-3 --energy-lr 1e-4 --set loss.energy_reg=0.01 \
                --lebm-steps 2 --epochs 150 --max-minutes ${MINUTES:-35} --val-every 5 --val-phantoms 10 \
                --out "$RUNS/lebm-default.safetensors"
              # test-time inference defaults chosen on validation (LEBM_SIGMA above; docs/training.md, LEBM)
              "${PYTHON:-.venv/bin/python}" scripts/set_sampling.py "$RUNS/lebm-default.safetensors" \
                "$RUNS/lebm-default.safetensors" --overwrite --set lebm.inference_prior_sigma="$LEBM_SIGMA" \
                --set lebm.posterior_steps=80 --reason "$LEBM_REASON"
              same_output "$RUNS/lebm-default.safetensors" ;;
    slabnet)  # the learned slab interpolation of the output step (1 mm patches; one process, 2 threads). On a GPU
              # the steps wait for the examples (~1 s each on one core): SLAB_PAIRS, SLAB_REDRAW and WORKERS there,
              # SLAB_INIT (a SlabNet to start from, --init-from) and SLAB_LR as scripts/gpu_session.sh sets them
              "$LSDEBM" train --model slabnet --data bundled --real-fraction 0.7 --pairs "${SLAB_PAIRS:-120}" \
                --redraw "${SLAB_REDRAW:-0.05}" --workers "${WORKERS:-0}" ${SLAB_INIT:+--init-from "$SLAB_INIT"} \
                --data-seed 1000 --val-phantoms 12 --val-seed 2000 --seed 0 --batch-size 4 --lr "${SLAB_LR:-2e-3}" \
                --epochs 1000 --max-minutes ${MINUTES:-44} --val-every 5 --device "${SLAB_DEVICE:-cpu}" --threads 2 --overwrite \
                --out "$RUNS/slabnet-default.safetensors"
              "${PYTHON:-.venv/bin/python}" scripts/set_sampling.py "$RUNS/slabnet-default.safetensors" \
                "$RUNS/slabnet-default.safetensors" --overwrite --set consistency.interpolation="$SLAB_WEIGHT" \
                --reason "$SLAB_REASON" ;;
    slabnet-refine)  # optional, after slabnet: its weights plus a 1 mm block, fine-tuned; tried in session 15 and
              # NOT bundled (+0.0010 Dice on our simulator, +-0.0002 on the second, +0.16 s per vertebra;
              # docs/real-anatomy.md). Left in $RUNS; compare with `lsdebm evaluate --real --slab-model FILE`.
              "$LSDEBM" train --model slabnet --data bundled --real-fraction 0.7 --pairs 120 --redraw 0.05 \
                --data-seed 1000 --val-phantoms 12 --val-seed 2000 --seed 0 --batch-size 4 --lr 5e-4 \
                --epochs 1000 --max-minutes ${MINUTES:-35} --val-every 5 --device "${SLAB_DEVICE:-cpu}" --threads 2 --overwrite \
                --set model.slab_refine=8 --init-from "$RUNS/slabnet-default.safetensors" \
                --out "$RUNS/slabnet-refine.safetensors"
              "${PYTHON:-.venv/bin/python}" scripts/set_sampling.py "$RUNS/slabnet-refine.safetensors" \
                "$RUNS/slabnet-refine.safetensors" --overwrite --set consistency.interpolation="$SLAB_WEIGHT" \
                --reason "$SLAB_REASON; kept for the refined model (not re-tuned)" ;;
    lsdebm-finetune)  # optional: the installed LSD-EBM (FROM) trained further with fresh optimisers, a new draw of
              # the bank (FINETUNE_SEED) and a smaller rate (LR; the energy's LR/5, as 1e-3 / 2e-4 above); session 23,
              # no GPU. Left in $RUNS/lsdebm-finetune${TAG:-}.safetensors; install it by hand after validation.
              local lr=${LR:-3e-4} tuned="$RUNS/lsdebm-finetune${TAG:-}.safetensors"
              "$LSDEBM" train --model lsdebm "${COMMON[@]}" --data-seed "${FINETUNE_SEED:-3000}" --lr "$lr" \
                --energy-lr "$("${PYTHON:-.venv/bin/python}" -c "print('%g' % (float('$lr') / 5))")" --epochs 150 \
                --max-minutes ${MINUTES:-45} --val-every 5 --init-from "${FROM:-$DEST/lsdebm-default.safetensors}" \
                --out "$tuned"
              "${PYTHON:-.venv/bin/python}" scripts/set_sampling.py "$tuned" "$tuned" --overwrite \
                --set consistency.weight=10.0 --set consistency.steps=4 --set consistency.projection=1.0 \
                --set consistency.interpolation=2.0 --reason "$GUIDED_REASON" ;;
    *) echo "unknown step $1 (expected lsdebm, vae, lebm, reconnet, slabnet, slabnet-refine, lsdebm-finetune)" >&2
       exit 2 ;;
  esac
  case "$1" in slabnet-refine|lsdebm-finetune) return ;; esac  # not installed (above)
  local name=$1-default.safetensors dest=$DEST
  [ "$1" = slabnet ] && dest=$DEST/slab
  mkdir -p "$dest"
  cp "$RUNS/$name" "$dest/.$name.tmp" && mv "$dest/.$name.tmp" "$dest/$name"
}

for step in "${@:-lsdebm vae lebm reconnet slabnet}"; do
  for s in $step; do train_model "$s"; done
done
