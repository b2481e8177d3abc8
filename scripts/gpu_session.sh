#!/usr/bin/env bash
# One session on a lent GPU, as one prepared script (the device time is short and starts are
# costly): the four bundled models trained side by side on the GPU, the CUDA tests, the
# benchmarks on CUDA, and a real reconstruction and a recorded run (the explorer's scrub) on it.
#
# Usage: OUT=DIR scripts/gpu_session.sh
#   OUT      everything written goes here: <model>-default.safetensors (trained, with the
#            measurement-aware output settings of scripts/train_bundled.sh) and logs.tgz
#            (training logs and per-epoch CSVs, pytest output, bench JSON, timings)
#   MINUTES  training cap per model (default 5; MINUTES_<model> for one lane's own)
#   LANES    (default "reconnet lsdebm vae lebm"; slabnet too: it draws its own 1 mm examples with SLAB_WORKERS
#            processes, SLAB_PAIRS, SLAB_REDRAW, from SLAB_INIT (default the bundled SlabNet) at SLAB_LR);
#            DEVICE (default cuda; cpu for a dry run of the training part)
#   DEADLINE seconds after which everything still running is stopped (default 560)
#   PY, LSDEBM  the python and the lsdebm command (default python3 and `python3 -m lsdebm.cli.main`)
# On the device machine the project is not installed: its packages travel as wheels in .whl/
# (nibabel), and src/ goes on PYTHONPATH; see docs/training.md, "On a GPU".
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:?set OUT to the output folder}
PY=${PY:-python3}
LOGS=$(mktemp -d)
RUNS=$LOGS/runs
T0=$(date +%s)
DEADLINE=${DEADLINE:-560}
if [ -z "${LSDEBM:-}" ]; then
  mkdir -p "$LOGS/bin"
  printf '#!/bin/sh\nexec %s -m lsdebm.cli.main "$@"\n' "$PY" > "$LOGS/bin/lsdebm"
  chmod +x "$LOGS/bin/lsdebm"
  LSDEBM=$LOGS/bin/lsdebm
fi
export LSDEBM PYTHON=$PY RUNS DEST=$LOGS/installed PYTHONUNBUFFERED=1

elapsed() { echo $(( $(date +%s) - T0 )); }
left() { echo $(( DEADLINE - $(elapsed) )); }
minutes() { local cap=MINUTES_$1; echo "${!cap:-$MINUTES}"; }  # a lane's own cap, e.g. MINUTES_lsdebm=6.5
step() { echo "== $(elapsed) s: $*" | tee -a "$LOGS/steps.txt"; }
limited() {  # limited SECONDS NAME CMD...: run CMD with its output in LOGS/NAME.txt, never past the deadline
  local s=$1 name=$2; shift 2
  [ "$(left)" -lt "$s" ] && s=$(left)
  if [ "$s" -le 5 ]; then step "skipped $name (deadline)"; return 0; fi
  step "$name (up to $s s)"
  timeout "$s" "$@" > "$LOGS/$name.txt" 2>&1
  step "$name: exit $?"
}

step "environment"
{ nvidia-smi; "$PY" -c "import torch, numpy; print('torch', torch.__version__, 'cuda', torch.version.cuda,
  torch.cuda.get_device_name(0), 'numpy', numpy.__version__)"; nproc; } > "$LOGS/environment.txt" 2>&1
cat "$LOGS/environment.txt"

# 1. the four models side by side (scripts/train_bundled.sh, the GPU settings documented there); the
# first lane draws the shared bank with 12 processes, the others start once it is on disk
step "training: ${LANES:-reconnet lsdebm vae lebm}, ${MINUTES:-5} min each"
export DEVICE=${DEVICE:-cuda} AMP=auto WORKERS=${WORKERS:-3} THREADS=1 MINUTES=${MINUTES:-5} BANK_CACHE=$LOGS/bank
models=(); pids=()
for m in ${LANES:-reconnet lsdebm vae lebm}; do
  if [ "$m" != slabnet ]; then models+=("$m"); continue; fi  # SlabNet: its own examples, no shared bank
  SLAB_DEVICE=$DEVICE WORKERS=${SLAB_WORKERS:-6} SLAB_PAIRS=${SLAB_PAIRS:-480} SLAB_REDRAW=${SLAB_REDRAW:-0.03} \
    SLAB_INIT=${SLAB_INIT-src/lsdebm/checkpoints/slab/slabnet-default.safetensors} SLAB_LR=${SLAB_LR:-1e-3} \
    MINUTES=$(minutes slabnet) timeout "$(left)" bash scripts/train_bundled.sh slabnet > "$LOGS/train-slabnet.txt" 2>&1 &
  pids+=($!)
done
set -- "${models[@]}" ""
FIRST_WORKERS=$(( $(nproc) * 3 / 4 )); [ "$FIRST_WORKERS" -gt 12 ] && FIRST_WORKERS=12
if [ -n "$1" ]; then
  WORKERS=$FIRST_WORKERS MINUTES=$(minutes "$1") timeout "$(left)" bash scripts/train_bundled.sh "$1" \
    > "$LOGS/train-$1.txt" 2>&1 &
  pids+=($!)
fi
first=""; [ ${#pids[@]} -gt 0 ] && first=${pids[${#pids[@]}-1]}
# the CUDA tests meanwhile (correctness, not timing): the device resolver, the graphed Langevin chain,
# CUDA training and the CUDA benchmark request
limited 150 pytest-cuda "$PY" -m pytest -q -p no:cacheprovider tests/test_device.py tests/test_fast_sampler.py \
  tests/test_train.py tests/test_bench.py -k "cuda or device or graph" -o addopts=-ra
while [ -n "$1" ] && ! ls "$BANK_CACHE"/bank-*.safetensors > /dev/null 2>&1 && kill -0 "$first" 2> /dev/null; do
  sleep 2
done
step "bank ready; the other lanes start"
shift
for m in "$@"; do
  [ -n "$m" ] || continue
  MINUTES=$(minutes "$m") timeout "$(left)" bash scripts/train_bundled.sh "$m" > "$LOGS/train-$m.txt" 2>&1 &
  pids+=($!)
done
for p in "${pids[@]}"; do wait "$p"; done
step "training done"
tail -n 3 "$LOGS"/train-*.txt
# nothing trained although time is left: stop here, so that a fix can be re-run while the machine is warm
if ! ls "$LOGS"/installed/*-default.safetensors > /dev/null 2>&1 \
    && ! ls "$LOGS"/installed/slab/*-default.safetensors > /dev/null 2>&1; then
  step "no model was trained; packing the logs and stopping"
  tar -czf "$OUT/logs.tgz" -C "$LOGS" . ; exit 3
fi
# the retrained decoders read on real validation crops before anything is bundled: a decoder whose last
# block is dead inside says one probability there (docs/real-anatomy.md, "Session 21")
for m in lsdebm vae; do
  [ -f "$LOGS/installed/$m-default.safetensors" ] && limited 30 "decoder-$m" "$PY" -m lsdebm.evaluation.decoder \
    "$LOGS/installed/$m-default.safetensors" --json
done

# 2. the rest of the Qt-free suite with the GPU visible ("auto" is CUDA here), before the timings: in session 22 it
# found three faults the CPU never shows, while the timings repeat session 13's (75 s with 14 processes there)
parallel=(); "$PY" -c "import xdist" 2> /dev/null && parallel=(-n "$(( $(nproc) - 2 ))")  # pytest-xdist, where present
limited 120 pytest-core "$PY" -m pytest -q -p no:cacheprovider "${parallel[@]}" -m "not gui" \
  --continue-on-collection-errors -o addopts=-ra --timeout 100 tests

# 3. timings on the GPU, nothing else running
limited 90 bench-sampling "$LSDEBM" bench --device cuda --repeats 3 --only energy,chain,decode,scrub \
  --json "$LOGS/bench-sampling.json"
limited 60 bench-end-to-end "$LSDEBM" bench --device cuda --repeats 3 --only end_to_end,peak,training,memory --quick \
  --json "$LOGS/bench-end-to-end.json"
limited 60 bench-real "$PY" benchmarks/bench_real.py --device cuda --vertebrae 5
limited 45 demo "$LSDEBM" demo --headless --device cuda --out "$LOGS/demo" --overwrite
for m in reconnet lsdebm; do
  limited 45 "reconstruct-$m" bash -c "time '$LSDEBM' reconstruct '$LOGS/demo/input_lq.nii.gz' --method $m \
    -o '$LOGS/reconstructed-$m.nii.gz' --device cuda --overwrite"
done

step "packing"
cp "$LOGS"/installed/*-default.safetensors "$LOGS"/installed/slab/*-default.safetensors "$OUT"/ 2>/dev/null
for m in ${LANES:-reconnet lsdebm vae lebm}; do  # a lane stopped by the deadline: its last epoch's checkpoint
  [ -f "$OUT/$m-default.safetensors" ] || cp "$RUNS/$m-default.safetensors" "$OUT/$m-partial.safetensors" 2>/dev/null
done
rm -rf "$LOGS"/demo/*.nii.gz "$LOGS"/demo/*.npz "$LOGS"/*.nii.gz "$RUNS"/*.safetensors "$LOGS"/installed "$LOGS"/bank
tar -czf "$OUT/logs.tgz" -C "$LOGS" .
ls -la "$OUT"
step "end"
