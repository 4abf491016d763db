#!/usr/bin/env bash
# Rebuild a shipped model set from nothing, with the project's own commands. Every step resumes:
# re-running after an interruption continues where it stopped.
#   bash tools/reproduce.sh toy4  |  bash tools/reproduce.sh music4  |  bash tools/reproduce.sh music4-live (after music4)
set -euo pipefail
cd "$(dirname "$0")/.."
SET=${1:?usage: tools/reproduce.sh toy4|music4|music4-live}
OUT=${OUT:-models/$SET}
if [ "$SET" = music4-live ]; then
  # The live-size set: music4's encoder with smaller priors (K=4 in real time on one core).
  for s in bass drums guitar piano; do
    rtsep train prior --source "$s" --data data/music4 --out "$OUT" --steps 800 --hidden 16 --flows 4 --layers 3 \
      --gain-min 0.5 --gain-max 1.0 --threads 1
  done
  python - "$OUT" <<'PY'
import shutil, sys
from rtsep.card import read_card, update_card
out, src = sys.argv[1], read_card("models/music4")
shutil.copy("models/music4/encoder.pt", f"{out}/encoder.pt")
update_card(out, "encoder", value=src["encoder"])
update_card(out, "langevin", value=src["langevin"])
PY
  rtsep eval priors "$OUT" --data data/music4-eval --json "$OUT/prior_eval.json" --plot "$OUT/prior_eval.png"
  rtsep eval separate "$OUT" --data data/music4-eval --steps 4 --clips 20 --seconds 4 --label supervised
  rtsep export "$OUT"
  python tools/write_card.py "$OUT"
  exit 0
fi
case "$SET" in
  toy4)
    SOURCES="sine square saw triangle"; CLIPS=400; SECONDS_=1; PRIOR_STEPS=1200; GAIN="--gain-min 0.7 --gain-max 1.0"
    ENC_STEPS=${ENC_STEPS:-800}; ENC_GAIN="--gain-min 1.0 --gain-max 1.0" ;;
  music4)
    SOURCES="bass drums guitar piano"; CLIPS=400; SECONDS_=4; PRIOR_STEPS=1200; GAIN="--gain-min 0.5 --gain-max 1.0"
    ENC_STEPS=${ENC_STEPS:-800}; ENC_GAIN="--gain-min 0.5 --gain-max 1.0" ;;
  *) echo "error: unknown set $SET (toy4 or music4)" >&2; exit 2 ;;
esac
[ -f "data/$SET/manifest.json" ] || rtsep data "$SET" "data/$SET" --clips $CLIPS --seconds $SECONDS_ --seed 0
[ -f "data/$SET-eval/manifest.json" ] || rtsep data "$SET" "data/$SET-eval" --clips 400 --seconds $SECONDS_ --seed 99
for s in $SOURCES; do
  rtsep train prior --source "$s" --data "data/$SET" --out "$OUT" --steps $PRIOR_STEPS $GAIN
done
rtsep eval priors "$OUT" --data "data/$SET-eval" --json "$OUT/prior_eval.json" --plot "$OUT/prior_eval.png"
# The shipped encoder is the supervised comparison (the seed objective's numbers are lower: README).
rtsep train encoder "$OUT" --data "data/$SET" --objective supervised --steps "$ENC_STEPS" --segment 8192 $ENC_GAIN
rtsep eval separate "$OUT" --data "data/$SET-eval" --steps 4 --clips 20 --label supervised
# Seed objective (no stems), same priors, in runs/: source-dropout curriculum + annealed KL sigma.
mkdir -p "runs/$SET-seed" && cp -r "$OUT/priors" "$OUT/card.json" "runs/$SET-seed/"
rtsep train encoder "runs/$SET-seed" --data "data/$SET" --steps "${SEED_STEPS:-400}" --kl-sigma 0.02 \
  --kl-sigma-start 0.1 --active-start 0.25 --segment 8192 $ENC_GAIN
rtsep eval separate "runs/$SET-seed" --data "data/$SET-eval" --steps 0 --clips 20
rtsep export "$OUT"
python tools/write_card.py "$OUT"
