#!/usr/bin/env bash
# Rebuild a shipped model set from nothing, with the project's own commands. Every step resumes:
# re-running after an interruption continues where it stopped.
#   bash tools/reproduce.sh toy4  |  bash tools/reproduce.sh music4  |  music4-big (the session-24 music4, after music4-tf)  |  bash tools/reproduce.sh music4-tf (after music4)  |  music4-long (after music4-tf)  |  music4-adapt (after music4-long)  |  music4-more (after music4-big; the shipped music4 since session 27)
#   bash tools/reproduce.sh music4-v2 | toy4-v2 | music4-v3 | music4-v4 | toy4-v3 | toy4-distill | toy4-seedft | toy4-swaps | toy4-basis | toy4-seed | music4-bands | music4-v2-bands  (session 6-19 LU-prior experiments in
#   runs/, after the sets' data and, for music4-v2, runs/music4-s05a1, for toy4-v3, toy4-v2, for toy4-distill, toy4-v3, for toy4-seedft,
#   toy4-distill, for toy4-swaps, toy4-seedft; toy4-basis from nothing, toy4-seed after toy4-basis's data, music4-bands after models/music4, music4-v2-bands from the data: README "Session 6" to "Session 19")
set -euo pipefail
cd "$(dirname "$0")/.."
SET=${1:?usage: tools/reproduce.sh toy4|music4|music4-big|music4-more|music4-live|music4-v2|music4-v3|music4-v4|toy4-v2|toy4-v3|toy4-distill|toy4-seedft|toy4-swaps|toy4-basis|toy4-seed|music4-bands|music4-v2-bands}
OUT=${OUT:-models/$SET}
# with_encoder PRIORS_DIR ENCODER_DIR OUT: OUT = PRIORS_DIR's priors + ENCODER_DIR's encoder (for the
# objective gap and the chain of one model's encoder under another set's priors).
with_encoder() {
  python - "$@" <<'PY'
import shutil, sys
from pathlib import Path
from rtsep.card import read_card, update_card
pri, enc, out = map(Path, sys.argv[1:4])
shutil.copytree(pri / "priors", out / "priors", dirs_exist_ok=True)
shutil.copy(enc / "encoder.pt", out / "encoder.pt")
for s, e in read_card(pri)["priors"].items():
    update_card(out, "priors", s, value=e)
update_card(out, "encoder", value=read_card(enc)["encoder"])
update_card(out, "sample_rate", value=read_card(pri)["sample_rate"])
PY
}
# copy_priors SRC DST: SRC's priors and TF priors (and their checkpoints, so DST can resume them) and card,
# without its encoder or that encoder's evaluations and bench, as the start of another run.
copy_priors() {
  mkdir -p "$2/ckpt" && cp -r "$1/priors" "$2/"
  if [ -d "$1/tf_priors" ]; then cp -r "$1/tf_priors" "$2/"; fi
  if compgen -G "$1/ckpt/prior_*.pt" > /dev/null; then cp "$1"/ckpt/prior_*.pt "$2/ckpt/"; fi
  python -c "import json,sys; c=json.load(open(sys.argv[1])); [c.pop(k, None) for k in ('encoder', 'separation_eval', 'bench_cpu')]; json.dump(c, open(sys.argv[2], 'w'))" \
    "$1/card.json" "$2/card.json"
}
# ship_encoder SRC OUT [KEY...]: SRC's encoder weights and card section into the model OUT, and SRC's card KEYs
# (its chain, its evaluations); OUT's bench goes, it timed the encoder it had.
ship_encoder() {
  python - "$@" <<'PY'
import shutil, sys
from pathlib import Path
from rtsep.card import read_card, update_card, write_card
src, out, keys = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
shutil.copy(src / "encoder.pt", out / "encoder.pt")
update_card(out, "encoder", value=read_card(src)["encoder"])
card, given = read_card(out), read_card(src)
card.update({k: given[k] for k in keys})
card.pop("bench_cpu", None)
write_card(out, card)
PY
}
# merge_data OUT FIRST MORE...: a set whose train split links every set's clips (prefixed, so clip i of each
# source stays one song) and whose valid and test splits are FIRST's, so valid curves compare with FIRST's runs.
merge_data() {
  local out=$1 first=$2 i=0
  [ -f "$out/manifest.json" ] && return 0
  mkdir -p "$out/train"
  ln -sfn "$(realpath "$first/valid")" "$out/valid" && ln -sfn "$(realpath "$first/test")" "$out/test"
  for d in "${@:2}"; do
    for src in "$(realpath "$d")"/train/*; do
      mkdir -p "$out/train/${src##*/}"
      for f in "$src"/*.wav; do ln -sf "$f" "$out/train/${src##*/}/s${i}_${f##*/}"; done
    done
    i=$((i + 1))
  done
  cp "$first/manifest.json" "$out/manifest.json"  # last: its presence means the set is complete
}
# v2_eval_data: the held-out sets every generator-v2 model is measured on: seed-99 songs rendered with MuseScore
# General and with FluidR3, and the 6/8 style hold-out.
v2_eval_data() {
  [ -f data/m4v2-muse/manifest.json ] || rtsep data music4 data/m4v2-muse --heldout --clips 40 --seconds 4 --seed 99 --meters 4/4,3/4
  [ -f data/m4v2-fluid/manifest.json ] || rtsep data music4 data/m4v2-fluid --heldout --clips 40 --seconds 4 --seed 99 \
    --meters 4/4,3/4 --soundfont /usr/share/sounds/sf2/FluidR3_GM.sf2
  [ -f data/m4v2-style/manifest.json ] || rtsep data music4 data/m4v2-style --heldout --clips 40 --seconds 4 --seed 98 --meters 6/8
}
# copy_encoder SRC DST: SRC's encoder weights and checkpoint, for DST to train on from there.
copy_encoder() {
  mkdir -p "$2/ckpt" && cp "$1/encoder.pt" "$2/" && cp "$1/ckpt/encoder.pt" "$2/ckpt/"
}
# shard_eval MODEL DATA CLIPS NAME LABEL [FLAGS]: MODEL's card chain (or FLAGS) on CLIPS 1 s clips, each one
# block, in two shards (one core each), merged into runs/NAME.json and MODEL's card under LABEL.
shard_eval() {
  for i in 0 1; do
    OMP_NUM_THREADS=1 rtsep eval separate "$1" --data "$2" --clips "$3" --seconds 1 --whole --shard $i/2 \
      --json "runs/$4-$i.json" "${@:6}" &
  done
  wait
  rtsep eval merge "runs/$4-0.json" "runs/$4-1.json" --label "$5" --json "runs/$4.json"
}
# pooled ROW FILES...: clips, median, mean, clips with all four sources above 8 dB of merged results' ROW.
pooled() {
  python -c 'import json,sys,numpy as np; A=np.concatenate([json.load(open(f))["per_clip"][sys.argv[1]]["si_sdri"] for f in sys.argv[2:]]); print(len(A), np.median(A,0).round(1), A.mean(0).round(1), (A.min(1)>8).sum())' "$@"
}
if [ "$SET" = music4-v2 ]; then
  # Bigger priors with learned 1x1 mixing (24 min each on one thread; run two at a time on two
  # cores), the seed-objective encoder on them (23 min) and its evaluation with the mask chain.
  OUT=runs/m4v2
  for s in bass drums guitar piano; do
    rtsep train prior --source "$s" --data data/music4 --out "$OUT" --flows 8 --hidden 48 --layers 5 --mixing lu \
      --steps 2600 --minutes 24 --threads 1
  done
  rtsep eval priors "$OUT" --data data/music4-eval
  rtsep train encoder "$OUT" --data data/music4 --objective seed --front stft --stride 256 --blocks 5 --steps 1500 \
    --segment 8192 --kl-sigma-start 0.1 --kl-sigma 0.02 --threads 1
  CHAIN="--space mask --sigma-end 0.02 --temperature 0"
  python research/objective_gap.py "$OUT" --data data/music4-eval --sigma 0.02
  for start in 0.05 0.1; do
    rtsep eval separate "$OUT" --data data/music4-eval --steps 16 $CHAIN --sigma-start $start --clips 20 --seconds 4
  done
  rtsep eval separate "$OUT" --data data/music4-muse --steps 16 $CHAIN --sigma-start 0.05 --clips 20 --seconds 4
  # The short-clip settings (6 clips of 2 s).
  for args in "16 --sigma-start 0.05" "16 --sigma-start 0.1" "32 --sigma-start 0.05"; do
    rtsep eval separate "$OUT" --data data/music4-eval --steps $args $CHAIN --clips 6 --seconds 2
  done
  rtsep eval separate "$OUT" --data data/music4-eval --steps 32 --space mask --sigma-start 0.05 --sigma-end 0.01 \
    --temperature 0 --clips 6 --seconds 2
  # The session-5 seed encoder under these priors (objective gap), the supervised encoder with the chain.
  with_encoder "$OUT" runs/music4-s05a1 runs/m4v2-gap
  for s in 0.01 0.02 0.05 0.1; do python research/objective_gap.py runs/m4v2-gap --data data/music4-eval --sigma $s; done
  with_encoder "$OUT" models/music4 runs/m4v2-sup
  rtsep eval separate runs/m4v2-sup --data data/music4-eval --steps 16 $CHAIN --sigma-start 0.05 --clips 6 --seconds 2
  exit 0
fi
if [ "$SET" = music4-v3 ]; then
  # Session 7: the music4-v2 priors resumed on four times the data (1600 clips per source, another
  # seed), then the m4v2 seed encoder resumed on them. Also the control: that encoder trained twice as
  # long on the old priors (runs/m4v2-e3k). Needs runs/m4v2 (music4-v2 above).
  [ -f data/music4-xl/manifest.json ] || rtsep data music4 data/music4-xl --clips 1600 --seconds 4 --seed 1 --generator v1
  CHAIN="--space mask --sigma-end 0.02 --temperature 0 --clips 20 --seconds 4"
  ENC="--objective seed --front stft --stride 256 --blocks 5 --segment 8192 --kl-sigma-start 0.1 --kl-sigma 0.02 --threads 1"
  if [ ! -f runs/m4v2-e3k/ckpt/encoder.pt ]; then
    copy_priors runs/m4v2 runs/m4v2-e3k && copy_encoder runs/m4v2 runs/m4v2-e3k
  fi
  rtsep train encoder runs/m4v2-e3k --data data/music4 $ENC --steps 3000
  rtsep eval separate runs/m4v2-e3k --data data/music4-eval --steps 16 $CHAIN --sigma-start 0.1
  OUT=runs/m4v3
  [ -f "$OUT/card.json" ] || copy_priors runs/m4v2 "$OUT"
  for s in bass drums guitar piano; do
    rtsep train prior --source "$s" --data data/music4-xl --out "$OUT" --flows 8 --hidden 48 --layers 5 --mixing lu \
      --steps 4600 --minutes 30 --threads 1
  done
  rtsep eval priors "$OUT" --data data/music4-eval
  # The encoder continues from runs/m4v2-e3k's 3000 steps under these priors, on music4-xl.
  [ -f "$OUT/ckpt/encoder.pt" ] || copy_encoder runs/m4v2-e3k "$OUT"
  rtsep train encoder "$OUT" --data data/music4-xl $ENC --steps 4000
  rtsep eval separate "$OUT" --data data/music4-eval --steps 16 $CHAIN --sigma-start 0.1
  exit 0
fi
if [ "$SET" = music4-v4 ]; then
  # Session 8: the music4-v3 priors fine-tuned with the margin term against leaked-other-source
  # negatives (18 min per prior on one thread; run two at a time), then two seed encoders on them: a
  # fresh one as in music4-v2 (runs/m4c) and the music4-v2 encoder continued for 1000 steps
  # (runs/m4c-ft). Needs runs/m4v3 (music4-v3) and runs/m4v2.
  OUT=runs/m4c
  for s in bass drums guitar piano; do
    rtsep train prior --source "$s" --data data/music4-xl --out "$OUT" --init-from runs/m4v3 --contrast 1 \
      --contrast-margin 0.5 --lr 3e-4 --steps 500 --minutes 18 --threads 1
  done
  rtsep eval priors "$OUT" --data data/music4-eval
  python research/leak_gap.py runs/m4v3 --data data/music4-eval
  python research/leak_gap.py "$OUT" --data data/music4-eval
  CHAIN="--space mask --sigma-end 0.02 --temperature 0 --clips 20 --seconds 4"
  ENC="--objective seed --front stft --stride 256 --blocks 5 --segment 8192 --kl-sigma-start 0.1 --kl-sigma 0.02 --threads 1"
  if [ ! -f runs/m4c-ft/ckpt/encoder.pt ]; then
    copy_priors "$OUT" runs/m4c-ft && copy_encoder runs/m4v2 runs/m4c-ft
  fi
  rtsep train encoder "$OUT" --data data/music4 $ENC --steps 1500
  rtsep train encoder runs/m4c-ft --data data/music4 $ENC --steps 2500
  for run in "$OUT" runs/m4c-ft; do
    rtsep eval separate "$run" --data data/music4-eval --steps 16 $CHAIN --sigma-start 0.1 --label "seed, sigma-0.1 chain"
  done
  exit 0
fi
if [ "$SET" = toy4-v2 ]; then
  # The same prior recipe on toy4 (10 min per prior on one thread) and a seed encoder on it (15 min).
  OUT=runs/t4v2
  for s in sine saw square triangle; do
    rtsep train prior --source "$s" --data data/toy4 --out "$OUT" --flows 8 --hidden 48 --layers 5 --mixing lu \
      --steps 1100 --minutes 10 --threads 1 --gain-min 0.7 --gain-max 1.0
  done
  rtsep eval priors "$OUT" --data data/toy4-eval
  rtsep train encoder "$OUT" --data data/toy4 --objective seed --front stft --stride 256 --blocks 5 --steps 1000 \
    --segment 8192 --kl-sigma-start 0.3 --kl-sigma 0.01 --gain-min 1 --gain-max 1 --minutes 20 --threads 1
  rtsep eval separate "$OUT" --data data/toy4-eval --steps 0 --clips 20 --seconds 1
  python research/objective_gap.py "$OUT" --data data/toy4-eval --sigma 0.01
  rtsep eval separate "$OUT" --data data/toy4-eval --steps 32 --space mask --sigma-start 0.3 --sigma-end 0.01 \
    --temperature 1 --clips 8 --seconds 1
  exit 0
fi
# Session 9: a cold-started (BASIS) mask chain with relabelling moves, on toy4-v2's priors and on those priors
# resumed 20 more minutes each (runs/t4v3, after toy4-v2). The encoder is t4v2's seed encoder, unused at warm start 0.
COLD="--steps 200 --space mask --sigma-start 0.3 --sigma-end 0.01 --temperature 1 --mask-lr 0.1 --warm-start 0 --relabel-every 20"
if [ "$SET" = toy4-basis ]; then
  # Session 15: the session-11 priors (toy4-v2's recipe, resumed 20 more minutes: runs/t4v3) shipped as the
  # priors-only set models/toy4-basis (float16 weights; the cold chain + 2 swap rounds + (session 16) one
  # sweep of band moves as its default: no encoder, no stems), evaluated on the 20 test clips and 10 seed-77
  # clips in two shards, one core each (~17 min per shard of 10 clips), with and without the band moves.
  # Trains only while the set has no priors: a rerun of a finished prior stage would train 20 more minutes.
  [ -f data/toy4/manifest.json ] || rtsep data toy4 data/toy4 --clips 400 --seconds 1 --seed 0
  [ -f data/toy4-eval/manifest.json ] || rtsep data toy4 data/toy4-eval --clips 400 --seconds 1 --seed 99
  if [ ! -f models/toy4-basis/priors/triangle.pt ]; then
    P="--data data/toy4 --out runs/t4v3 --flows 8 --hidden 48 --layers 5 --mixing lu --threads 1 --gain-min 0.7 --gain-max 1.0"
    for pair in "sine triangle" "saw square"; do
      ( for s in $pair; do OMP_NUM_THREADS=1 rtsep train prior --source "$s" $P --steps 1100 --minutes 10; done
        for s in $pair; do OMP_NUM_THREADS=1 rtsep train prior --source "$s" $P --steps 3100 --minutes 20; done ) &
    done
    wait
    python tools/ship_priors.py runs/t4v3 models/toy4-basis --check-data data/toy4-eval
  fi
  mkdir -p runs
  # the set's default chain (session 16: with one sweep of band moves), then without them (session 15's)
  [ -f data/toy4-eval77/manifest.json ] || rtsep data toy4 data/toy4-eval77 --clips 100 --seconds 1 --seed 77
  shard_eval models/toy4-basis data/toy4-eval 20 toy4-basis-b1-eval cold200_t0_swaps2_bands1_whole --steps 200
  shard_eval models/toy4-basis data/toy4-eval77 10 toy4-basis-b1-eval77 cold200_t0_swaps2_bands1_whole_seed77 --steps 200
  shard_eval models/toy4-basis data/toy4-eval 20 toy4-basis-eval cold200_t0_swaps2_whole --steps 200 --bands 0
  # the check on clips of a seed no choice was made on (10 test clips of seed 77)
  shard_eval models/toy4-basis data/toy4-eval77 10 toy4-basis-eval77 cold200_t0_swaps2_whole_seed77 --steps 200 --bands 0
  # and on the first 10 valid clips of the seed-99 set, with and without (session 16)
  shard_eval models/toy4-basis data/toy4-eval 10 toy4-basis-b1-valid cold200_t0_swaps2_bands1_whole_valid --steps 200 --split valid
  shard_eval models/toy4-basis data/toy4-eval 10 toy4-basis-valid cold200_t0_swaps2_whole_valid --steps 200 --split valid --bands 0
  # pooled over the three sets: clips, median, mean, clips with all four sources above 8 dB
  for v in b1- ""; do
    pooled encoder+langevin200 "runs/toy4-basis-${v}eval.json" "runs/toy4-basis-${v}eval77.json" "runs/toy4-basis-${v}valid.json"
  done
  # the seed-77 clips that still fail: do the priors rate the truth above the result? (search vs prior failure)
  OMP_NUM_THREADS=1 python research/search_gap.py models/toy4-basis --data data/toy4-eval77 --clips 1 2 4 5
  python tools/write_card.py models/toy4-basis
  exit 0
fi
if [ "$SET" = music4-bands ]; then
  # Session 18: seed-objective encoders on copies of the shipped music4 priors (2000 steps, ~8 min each on
  # one core; two at a time): the session-3 command (runs/m4s), q's std bounded (--max-scale), the
  # band-shape prior (--band-weight, --bands-per-octave) and both; encoder alone on 20 clips of 4 s, the
  # session-6 mask chain on 6 clips of 2 s, and the landscape of their means.
  [ -f data/music4/manifest.json ] || rtsep data music4 data/music4 --clips 400 --seconds 4 --seed 0 --generator v1
  [ -f data/music4-eval/manifest.json ] || rtsep data music4 data/music4-eval --clips 400 --seconds 4 --seed 99 --generator v1
  ENC="--data data/music4 --objective seed --front stft --stride 256 --blocks 5 --steps 2000 --segment 8192
    --kl-sigma-start 0.1 --kl-sigma 0.02 --threads 1"
  train() {  # train RUN FLAGS...: on a copy of models/music4's priors
    local run=$1; shift
    [ -f "$run/encoder.pt" ] || copy_priors models/music4 "$run"
    OMP_NUM_THREADS=1 rtsep train encoder "$run" $ENC "$@"
    OMP_NUM_THREADS=1 rtsep eval separate "$run" --data data/music4-eval --steps 0 --clips 20 --seconds 4 --json "$run-enc.json"
  }
  train runs/m4s & train runs/m4m1 --max-scale 0.001 & wait
  train runs/m4m10 --max-scale 0.01 & train runs/m4b03 --band-weight 0.03 & wait
  train runs/m4b10 --band-weight 0.1 & train runs/m4b30 --band-weight 0.3 & wait
  train runs/m4h10 --band-weight 0.1 --bands-per-octave 3 & train runs/m4mb10 --max-scale 0.001 --band-weight 0.1 & wait
  train runs/m4mb30 --max-scale 0.001 --band-weight 0.3 & wait
  chain() {  # chain RUN: the session-6 mask chain after the encoder
    OMP_NUM_THREADS=1 rtsep eval separate "$1" --data data/music4-eval --steps 16 --space mask --sigma-start 0.1 \
      --sigma-end 0.02 --temperature 0 --clips 6 --seconds 2 --json "$1-chain16.json"
  }
  chain runs/m4s & chain runs/m4m1 & wait
  chain runs/m4b10 & chain runs/m4b03 & wait
  for w in 0.1 0.3; do  # session 19: the same chain also climbing the band-shape prior m4b10 was trained with
    OMP_NUM_THREADS=1 rtsep eval separate runs/m4b10 --data data/music4-eval --steps 16 --space mask --sigma-start 0.1 \
      --sigma-end 0.02 --temperature 0 --clips 6 --seconds 2 --band-weight $w --json "runs/m4b10-chain16-bw$w.json" &
  done
  wait
  for i in 0 1; do  # the best encoder (band weight 0.1) + the chain on the 20 clips of 4 s
    OMP_NUM_THREADS=1 rtsep eval separate runs/m4b10 --data data/music4-eval --steps 16 --space mask --sigma-start 0.1 \
      --sigma-end 0.02 --temperature 0 --clips 20 --seconds 4 --shard $i/2 --json runs/m4b10-chain16-20-$i.json &
  done
  wait
  rtsep eval merge runs/m4b10-chain16-20-0.json runs/m4b10-chain16-20-1.json --json runs/m4b10-chain16-20.json
  python research/landscape.py models/music4 --data data/music4-eval --samples 16384 --band-weight 0.1 --solo data/music4 \
    --margins --encoders models/music4 runs/m4s runs/m4m1 runs/m4b10 runs/m4b03 runs/m4mb10 runs/m4mb30
  for s in 0.005 0.01 0.05 0.1; do  # the means-only encoder against the truth at every sigma
    python research/landscape.py models/music4 --data data/music4-eval --samples 16384 --sigma $s --encoders runs/m4m1
  done
  exit 0
fi
if [ "$SET" = music4-v2-bands ]; then
  # Session 19: the session-6 LU priors rebuilt (runs/m4v2, the music4-v2 commands; 16 min each here, two at
  # a time on two cores), seed encoders with the band-shape prior on copies of them (1500 steps, as session
  # 6), each alone, with the session-6 mask chain, and with that chain also climbing the band prior
  # (`--band-weight`), on the 20 held-out clips of 4 s in two shards (one core each).
  [ -f data/music4/manifest.json ] || rtsep data music4 data/music4 --clips 400 --seconds 4 --seed 0 --generator v1
  [ -f data/music4-eval/manifest.json ] || rtsep data music4 data/music4-eval --clips 400 --seconds 4 --seed 99 --generator v1
  prior() {
    OMP_NUM_THREADS=1 rtsep train prior --source "$1" --data data/music4 --out runs/m4v2 --flows 8 --hidden 48 --layers 5 \
      --mixing lu --steps 2600 --minutes 24 --threads 1
  }
  prior bass & prior drums & wait
  prior guitar & prior piano & wait
  rtsep eval priors runs/m4v2 --data data/music4-eval
  train() {  # train RUN FLAGS...: a seed encoder on a copy of runs/m4v2's priors
    local run=$1; shift
    [ -f "$run/card.json" ] || copy_priors runs/m4v2 "$run"
    OMP_NUM_THREADS=1 rtsep train encoder "$run" --data data/music4 --objective seed --front stft --stride 256 --blocks 5 \
      --steps 1500 --segment 8192 --kl-sigma-start 0.1 --kl-sigma 0.02 --threads 1 "$@"
  }
  train runs/m4v2b10 --band-weight 0.1 & train runs/m4v2b03 --band-weight 0.03 & wait
  evals() {  # evals RUN NAME FLAGS...: 20 clips of 4 s, two shards, merged into RUN-NAME.json
    for i in 0 1; do
      OMP_NUM_THREADS=1 rtsep eval separate "$1" --data data/music4-eval --clips 20 --seconds 4 --shard $i/2 \
        --json "$1-$2-$i.json" "${@:3}" &
    done
    wait
    rtsep eval merge "$1-$2-0.json" "$1-$2-1.json" --json "$1-$2.json"
  }
  CHAIN="--steps 16 --space mask --sigma-start 0.1 --sigma-end 0.02 --temperature 0"
  for run in runs/m4v2b10 runs/m4v2b03; do
    evals $run chain16 $CHAIN
  done
  evals runs/m4v2b10 chain16-bw10 $CHAIN --band-weight 0.1
  evals runs/m4v2b03 chain16-bw10 $CHAIN --band-weight 0.1
  evals runs/m4v2b10 chain32-bw10 --steps 32 --space mask --sigma-start 0.1 --sigma-end 0.02 --temperature 0 --band-weight 0.1
  evals runs/m4v2b10 chain8-bw10 --steps 8 --space mask --sigma-start 0.1 --sigma-end 0.02 --temperature 0 --band-weight 0.1
  evals runs/m4v2b10 chain16-bw30 $CHAIN --band-weight 0.3
  # Shipped as models/music4-seed (float16 priors + the band-prior encoder; the card's chain is the best
  # setting above), evaluated on the test clips and on the valid split, results stored in its card.
  python tools/ship_priors.py runs/m4v2 models/music4-seed --encoder runs/m4v2b10 --check-data data/music4-eval \
    --chain steps=16 space=mask sigma_start=0.1 sigma_end=0.02 temperature=0 band_weight=0.1
  for split in test valid; do
    for i in 0 1; do
      OMP_NUM_THREADS=1 rtsep eval separate models/music4-seed --data data/music4-eval --clips 20 --seconds 4 --split $split \
        --shard $i/2 --json "runs/music4-seed-$split-$i.json" &
    done
    wait
    label=mask16_bw10; [ $split = test ] || label=mask16_bw10_valid
    rtsep eval merge "runs/music4-seed-$split-0.json" "runs/music4-seed-$split-1.json" --label $label \
      --json "runs/music4-seed-$split.json"
  done
  python tools/write_card.py models/music4-seed
  time rtsep file examples/music4-mix.wav -o runs/music4-seed-example --model music4-seed  # the speed in its card
  exit 0
fi
if [ "$SET" = toy4-seed ]; then
  # Session 17: an encoder for the shipped toy4-basis priors, by the session 12-14 recipe. The priors'
  # own cold chain (no encoder, no stems) labels 64 stem-free training mixtures (two shards, one core
  # each, ~30 min); an encoder regresses the labels (runs/t4bd), then 100 seed-objective steps continue
  # it (runs/t4bds); shipped with the priors as models/toy4-seed, whose card chain starts warm from the
  # encoder (tools/ship_priors.py WARM: 4 steps, then the moves), evaluated like toy4-basis (two shards, one core each).
  for i in 0 1; do
    OMP_NUM_THREADS=1 rtsep data distill models/toy4-basis data/toy4-distill --data data/toy4 --clips 64 --threads 1 --shard $i/2 &
  done
  wait
  rtsep data distill models/toy4-basis data/toy4-distill --data data/toy4 --clips 64 --threads 1  # the manifest, if a shard lost the race
  python research/label_quality.py data/toy4-distill --data data/toy4
  [ -f runs/t4bd/encoder.pt ] || copy_priors models/toy4-basis runs/t4bd
  rtsep train encoder runs/t4bd --data data/toy4-distill --objective distill --front stft --stride 256 --blocks 5 \
    --steps 2000 --segment 8192 --batch 16 --threads 2
  [ -f runs/t4bds/encoder.pt ] || copy_priors models/toy4-basis runs/t4bds
  rtsep train encoder runs/t4bds --data data/toy4 --objective seed --init-from runs/t4bd --kl-sigma-start 0.1 \
    --kl-sigma 0.01 --gain-min 0.7 --gain-max 1.0 --steps 100 --segment 8192 --lr 1e-4 --threads 2
  python tools/ship_priors.py models/toy4-basis models/toy4-seed --encoder runs/t4bds
  shard_eval models/toy4-seed data/toy4-eval 20 toy4-seed-eval warm4_swaps2_ss60_bands1_whole
  shard_eval models/toy4-seed data/toy4-eval77 10 toy4-seed-eval77 warm4_swaps2_ss60_bands1_whole_seed77
  shard_eval models/toy4-seed data/toy4-eval 10 toy4-seed-valid warm4_swaps2_ss60_bands1_whole_valid --split valid
  pooled encoder+langevin4 runs/toy4-seed-eval.json runs/toy4-seed-eval77.json runs/toy4-seed-valid.json
  python tools/write_card.py models/toy4-seed
  exit 0
fi
if [ "$SET" = toy4-swaps ]; then
  # Session 14: two rounds of swap-and-relax moves after the distilled encoder (runs/t4d) and after the
  # seed-continued one (runs/t4d64s), then, for the latter, a longer warm chain (200 steps) and longer
  # relaxations of each swap proposal (--swap-steps 60). Each eval ~45-60 min on one core; two at once.
  WARM="--data data/toy4-eval --space mask --sigma-start 0.1 --sigma-end 0.01 --temperature 0 --mask-lr 0.1
    --warm-start 1 --relabel-every 20 --swaps 2 --clips 20 --seconds 1 --whole"
  for run in runs/t4d runs/t4d64s; do OMP_NUM_THREADS=1 rtsep eval separate "$run" $WARM --steps 60 --json "$run/eval_k60_swaps2.json" & done
  wait
  OMP_NUM_THREADS=1 rtsep eval separate runs/t4d64s $WARM --steps 200 --json runs/t4d64s/eval_k200_swaps2.json &
  OMP_NUM_THREADS=1 rtsep eval separate runs/t4d64s $WARM --steps 60 --swap-steps 60 --json runs/t4d64s/eval_k60_swaps2_ss60.json &
  wait
  # that last setting was picked on the test clips: check it on clips no choice was made on
  rtsep data toy4 data/toy4-eval77 --clips 100 --seconds 1 --seed 77
  CONFIRM="${WARM/--clips 20/--clips 10} --steps 60 --swap-steps 60"
  OMP_NUM_THREADS=1 rtsep eval separate runs/t4d64s ${CONFIRM/toy4-eval/toy4-eval77} --json runs/t4d64s/confirm_test77.json &
  OMP_NUM_THREADS=1 rtsep eval separate runs/t4d64s $CONFIRM --split valid --json runs/t4d64s/confirm_valid99.json &
  wait
  exit 0
fi
if [ "$SET" = toy4-seedft ]; then
  # Session 13: the seed objective continued from the distilled encoder (runs/t4d): annealed KL
  # sigma 0.1 -> 0.01 at lr 1e-4 for 100 (t4ds2) and 300 steps (t4ds3), and, for contrast, at a fixed
  # sigma 0.01 and lr 3e-4 for 300 steps (t4ds); the same 100 steps after an encoder distilled from 64
  # labelled mixtures (t4d64, t4d64s). Each alone, under the objective-gap diagnostic, and
  # warm-starting the session-12 chain with one round of moves.
  SEED="--data data/toy4 --objective seed --gain-min 0.7 --gain-max 1.0 --segment 8192 --threads 1"
  [ -f runs/t4ds/encoder.pt ] || copy_priors runs/t4v3 runs/t4ds
  rtsep train encoder runs/t4ds $SEED --init-from runs/t4d --kl-sigma-start 0 --kl-sigma 0.01 --steps 300 --lr 3e-4
  [ -f runs/t4ds2/encoder.pt ] || copy_priors runs/t4v3 runs/t4ds2
  rtsep train encoder runs/t4ds2 $SEED --init-from runs/t4d --kl-sigma-start 0.1 --kl-sigma 0.01 --steps 100 --lr 1e-4
  [ -f runs/t4ds3/encoder.pt ] || copy_priors runs/t4v3 runs/t4ds3
  rtsep train encoder runs/t4ds3 $SEED --init-from runs/t4d --kl-sigma-start 0.1 --kl-sigma 0.01 --steps 300 --lr 1e-4
  # 16 more labelled mixtures (64 in all; ~25 min on two cores), a distilled encoder on them, the seed steps after it
  for i in 0 1; do
    OMP_NUM_THREADS=1 rtsep data distill runs/t4v3 data/toy4-distill --data data/toy4 --clips 64 --threads 1 --shard $i/2 &
  done
  wait
  rtsep data distill runs/t4v3 data/toy4-distill --data data/toy4 --clips 64 --threads 1
  [ -f runs/t4d64/encoder.pt ] || copy_priors runs/t4v3 runs/t4d64
  rtsep train encoder runs/t4d64 --data data/toy4-distill --objective distill --front stft --stride 256 --blocks 5 \
    --steps 2000 --segment 8192 --batch 16 --threads 1
  [ -f runs/t4d64s/encoder.pt ] || copy_priors runs/t4v3 runs/t4d64s
  rtsep train encoder runs/t4d64s $SEED --init-from runs/t4d64 --kl-sigma-start 0.1 --kl-sigma 0.01 --steps 100 --lr 1e-4
  WARM="--data data/toy4-eval --steps 60 --space mask --sigma-start 0.1 --sigma-end 0.01 --temperature 0 --mask-lr 0.1
    --warm-start 1 --relabel-every 20 --swaps 1 --clips 20 --seconds 1 --whole"
  for run in runs/t4d runs/t4ds runs/t4ds2 runs/t4ds3 runs/t4d64 runs/t4d64s; do
    python research/objective_gap.py "$run" --data data/toy4-eval --sigma 0.01
    OMP_NUM_THREADS=1 rtsep eval separate "$run" --data data/toy4-eval --steps 0 --clips 20 --seconds 1 --whole
  done
  for run in runs/t4ds2 runs/t4d64s; do OMP_NUM_THREADS=1 rtsep eval separate "$run" $WARM; done
  OMP_NUM_THREADS=1 rtsep eval separate runs/t4ds2 ${WARM/--swaps 1/--swaps 2}
  exit 0
fi
if [ "$SET" = toy4-distill ]; then
  # Session 12: the runs/t4v3 priors label 48 stem-free training mixtures of 0.512 s with the cold
  # noise-free chain + 2 swap rounds (two shards at once, one core each; ~50 min); an encoder regresses
  # those labels (runs/t4d), evaluated alone and warm-starting a shorter chain. The labels' quality
  # against the excerpts the mixtures were made of, and how the encoders fit their training mixtures,
  # are measured only (research/label_quality.py), never trained on.
  for i in 0 1; do
    OMP_NUM_THREADS=1 rtsep data distill runs/t4v3 data/toy4-distill --data data/toy4 --clips 48 --threads 1 --shard $i/2 &
  done
  wait
  rtsep data distill runs/t4v3 data/toy4-distill --data data/toy4 --clips 48 --threads 1  # the manifest, if a shard lost the race
  python research/label_quality.py data/toy4-distill --data data/toy4
  copy_priors runs/t4v3 runs/t4d
  rtsep train encoder runs/t4d --data data/toy4-distill --objective distill --front stft --stride 256 --blocks 5 \
    --steps 2000 --segment 8192 --batch 16 --threads 2
  copy_priors runs/t4v3 runs/t4dp  # the pitch-shift augmentation: it underfits
  rtsep train encoder runs/t4dp --data data/toy4-distill --objective distill --front stft --stride 256 --blocks 5 \
    --steps 4000 --segment 4096 --batch 16 --pitch-shift 12 --threads 1
  for run in runs/t4d runs/t4dp; do python research/label_quality.py data/toy4-distill --data data/toy4 --encoder "$run"; done
  WARM="--data data/toy4-eval --steps 60 --space mask --sigma-start 0.1 --sigma-end 0.01 --temperature 0 --mask-lr 0.1
    --warm-start 1 --relabel-every 20 --clips 20 --seconds 1 --whole"
  for run in runs/t4d runs/t4dp; do OMP_NUM_THREADS=1 rtsep eval separate "$run" $WARM; done
  OMP_NUM_THREADS=1 rtsep eval separate runs/t4d $WARM --swaps 1
  exit 0
fi
if [ "$SET" = toy4-v3 ]; then
  [ -f runs/t4v3/card.json ] || { copy_priors runs/t4v2 runs/t4v3 && with_encoder runs/t4v2 runs/t4v2 runs/t4v3; }
  for s in sine saw square triangle; do
    rtsep train prior --source "$s" --data data/toy4 --out runs/t4v3 --flows 8 --hidden 48 --layers 5 --mixing lu \
      --steps 3100 --minutes 20 --threads 1 --gain-min 0.7 --gain-max 1.0
  done
  python research/swap_gap.py runs/t4v2 --data data/toy4-eval --swap sine triangle
  python research/cold_chain.py runs/t4v2 --data data/toy4-eval --relabel-every 0
  python research/cold_chain.py runs/t4v2 --data data/toy4-eval --relabel-every 20
  python research/cold_chain.py runs/m4v2 --data data/music4-eval --steps 60 --sigma-end 0.02 --clips 4 --seconds 2
  for every in 0 8; do  # music4: relabelling after the encoder and 16 mask steps (6 clips of 2 s)
    OMP_NUM_THREADS=1 rtsep eval separate runs/m4v2 --data data/music4-eval --steps 16 --space mask --sigma-start 0.1 \
      --sigma-end 0.02 --temperature 0 --relabel-every $every --clips 6 --seconds 2
  done
  OMP_NUM_THREADS=1 rtsep eval separate runs/t4v2 --data data/toy4-eval $COLD --clips 20 --seconds 1 --label cold200_relabel20
  for run in runs/t4v2 runs/t4v3; do  # each 1 s clip as one block, not inside the 1.5 s file window
    OMP_NUM_THREADS=1 rtsep eval separate "$run" --data data/toy4-eval $COLD --clips 20 --seconds 1 --whole \
      --label cold200_relabel20_whole
  done
  # session 10: blends, not swaps; the chain's noise; best of seeds; polish; the ratings per noise level
  python research/cold_chain.py runs/t4v3 --data data/toy4-eval --relabel-every 20 --project
  for seed in 1 2; do python research/cold_chain.py runs/t4v3 --data data/toy4-eval --relabel-every 20 --seed $seed; done
  for seed in 0 1; do python research/cold_chain.py runs/t4v3 --data data/toy4-eval --relabel-every 20 --seed $seed --polish 60; done
  python research/cold_chain.py runs/t4v3 --data data/toy4-eval --relabel-every 20 --temperature 0
  OMP_NUM_THREADS=1 rtsep eval separate runs/t4v3 --data data/toy4-eval $COLD --chains 4 --rate-sigma 0.1 --polish 60 \
    --clips 8 --seconds 1 --whole
  python research/rating_gap.py runs/t4v3 --data data/toy4-eval
  python research/rating_gap.py runs/t4v3 --data data/toy4-eval --chain-temperature 0
  OMP_NUM_THREADS=1 rtsep eval separate runs/t4v3 --data data/toy4-eval ${COLD/--temperature 1/--temperature 0} \
    --clips 20 --seconds 1 --whole --label cold200_t0_whole
  # Session 11: who holds which partial after that chain; swap-and-relax moves after it (the table's
  # row); the sine and triangle priors fine-tuned with the leak margin (runs/t4c, 14 min each), leak gaps.
  python research/cold_chain.py runs/t4v3 --data data/toy4-eval --relabel-every 20 --temperature 0 --partials
  OMP_NUM_THREADS=1 rtsep eval separate runs/t4v3 --data data/toy4-eval ${COLD/--temperature 1/--temperature 0} \
    --swaps 2 --clips 20 --seconds 1 --whole --label cold200_t0_swaps2_whole
  OMP_NUM_THREADS=1 rtsep eval separate runs/t4v3 --data data/toy4-eval \
    ${COLD/--temperature 1 --mask-lr 0.1 --warm-start 0/--temperature 0 --mask-lr 0.1 --warm-start 1} --swaps 2 --clips 8 --seconds 1 --whole
  if [ ! -f runs/t4c/card.json ]; then  # no prior checkpoints: --init-from starts each fine-tuning run
    mkdir -p runs/t4c && cp -r runs/t4v3/priors runs/t4v3/card.json runs/t4v3/encoder.pt runs/t4c/
  fi
  for s in sine triangle; do
    rtsep train prior --source "$s" --data data/toy4 --out runs/t4c --init-from runs/t4v3 --contrast 1 \
      --contrast-margin 0.5 --lr 3e-4 --steps 500 --minutes 18 --threads 1
  done
  for run in runs/t4v3 runs/t4c; do
    python research/leak_gap.py "$run" --data data/toy4-eval --sources sine triangle --sigmas 0.01 0.03 0.1
  done
  exit 0
fi
if [ "$SET" = music4-tf ]; then
  # Session 21 (issue 25): the TF flow priors on generator v2 solos and the learned 2-step chain, added to
  # models/music4 (after `reproduce.sh music4`); the shipped default since then. About 35 min on one thread.
  # Session 22: a step size per source and step (the default of `rtsep train chain`), 800 steps.
  OUT=${OUT:-models/music4}
  [ -f data/music4-v2/manifest.json ] || rtsep data music4 data/music4-v2 --clips 800 --seconds 8 --seed 0 --meters 4/4,3/4
  [ -f data/m4v2-muse/manifest.json ] || rtsep data music4 data/m4v2-muse --heldout --clips 40 --seconds 4 --seed 99 --meters 4/4,3/4
  [ -f data/m4v2-fluid/manifest.json ] || rtsep data music4 data/m4v2-fluid --heldout --clips 40 --seconds 4 --seed 99 \
    --meters 4/4,3/4 --soundfont /usr/share/sounds/sf2/FluidR3_GM.sf2
  for s in bass drums guitar piano; do
    rtsep train prior --domain tf --source "$s" --data data/music4-v2 --out "$OUT" --steps 2500 --threads 1
  done
  rtsep train chain "$OUT" --data data/music4-v2 --chain-steps 2 --steps 800 --threads 1
  for d in m4v2-fluid m4v2-muse; do
    rtsep eval priors "$OUT" --domain tf --data "data/$d" --clips 40
    rtsep eval separate "$OUT" --data "data/$d" --clips 40 --seconds 4 --backend torch --label "$d"
  done
  rtsep export "$OUT"
  python tools/write_card.py "$OUT"
  exit 0
fi
if [ "$SET" = music4-adapt ]; then
  # Session 21 (issue 28): adapt models/music4 to TimGM6mb (the stand-in for a user's own instruments, in no
  # default's training) from solo renders of other songs; evaluate on seed-99 songs it renders.
  OUT=${OUT:-runs/music4-tim}
  [ -f data/tim-user/manifest.json ] || rtsep data music4 data/tim-user --heldout --soundfont /usr/share/sounds/sf2/TimGM6mb.sf2 \
    --seed 5 --clips 60 --seconds 8 --meters 4/4,3/4
  [ -f data/tim-eval/manifest.json ] || rtsep data music4 data/tim-eval --heldout --soundfont /usr/share/sounds/sf2/TimGM6mb.sf2 \
    --seed 99 --clips 40 --seconds 4 --meters 4/4,3/4
  rtsep adapt music4 --sources data/tim-user/test -o "$OUT" --minutes 25 --threads 2
  for d in tim-eval m4v2-fluid m4v2-muse; do
    rtsep eval separate "$OUT" --data "data/$d" --clips 40 --seconds 4 --backend onnx --json "runs/eval/adapt-$d.json"
  done
  exit 0
fi
if [ "$SET" = music4-wide ]; then
  # The shipped music4 encoder since session 20 (issue 26): generator v2 (four GM banks, meters, swing,
  # per-stem augmentation; 6/8 held out as the style hold-out), a bigger TCN, SNR loss, half the training
  # mixtures a clip's own aligned stems; the priors stay models/music4's (`reproduce.sh music4`, v1 data).
  # About 100 min of training on the 2-core machine (other jobs sharing it), resumable.
  OUT=${OUT:-runs/m4x}
  [ -f data/music4-v2/manifest.json ] || rtsep data music4 data/music4-v2 --clips 800 --seconds 8 --seed 0 --meters 4/4,3/4
  v2_eval_data
  [ -f data/music4-muse-v1/manifest.json ] || rtsep data music4 data/music4-muse-v1 --heldout --clips 20 --seconds 4 --seed 99 --generator v1
  [ -f data/music4-eval-v1/manifest.json ] || rtsep data music4 data/music4-eval-v1 --heldout --clips 20 --seconds 4 --seed 99 \
    --generator v1 --soundfont /usr/share/sounds/sf2/FluidR3_GM.sf2
  [ -f "$OUT/card.json" ] || { mkdir -p "$OUT" && cp -r models/music4/priors "$OUT/" && python -c "import json,sys; c=json.load(open('models/music4/card.json')); json.dump({k: c[k] for k in ('schema', 'priors', 'sample_rate', 'langevin') if k in c}, open(sys.argv[1], 'w'))" "$OUT/card.json"; }
  rtsep train encoder "$OUT" --data data/music4-v2 --objective supervised --front stft --stride 256 --n-fft 1024 \
    --blocks 8 --hidden 256 --bottleneck 128 --segment 16384 --batch 8 --steps 5000 --lr 1e-3 --loss sdr --coherent 0.5 \
    --valid-every 500 --threads 1 --gain-min 0.5 --gain-max 1.0
  for d in m4v2-muse m4v2-fluid m4v2-style music4-muse-v1 music4-eval-v1; do
    rtsep eval separate "$OUT" --data "data/$d" --steps 0 --clips 40 --seconds 4 --label "$d" --json "runs/m4x-$d.json"
  done
  exit 0
fi
if [ "$SET" = music4-long ]; then
  # Session 23 (issues 25, 26): a candidate set, never shipped (over the live budget then). music4-wide's encoder (runs/m4x) trained on
  # twice the songs (generator v2, 1600 clips: the first 800 are data/music4-v2's, reused) for 22000 more steps;
  # models/music4's TF priors; the 2-step chain learned with the encoder fine-tuned through it (--encoder-lr).
  # About 2 h on one thread after music4-wide (the session-23 run did its first 8050 steps on the 800 clips of v2).
  OUT=${OUT:-runs/music4-long}
  [ -d "$OUT" ] || cp -r models/music4 "$OUT"  # its priors, TF priors and card; the encoder is replaced below
  [ -f runs/m4x/encoder.pt ] || OUT=runs/m4x bash tools/reproduce.sh music4-wide
  rtsep data music4 data/music4-v3 --clips 1600 --seconds 8 --seed 0 --meters 4/4,3/4  # keeps the clips it has
  W=${W:-runs/m4y}
  [ -f "$W/card.json" ] || { mkdir -p "$W" && cp -r models/music4/priors "$W/" && python -c "import json,sys; c=json.load(open('models/music4/card.json')); json.dump({k: c[k] for k in ('schema', 'priors', 'sample_rate', 'langevin') if k in c}, open(sys.argv[1], 'w'))" "$W/card.json"; }
  rtsep train encoder "$W" --data data/music4-v3 --init-from runs/m4x --objective supervised --segment 16384 --batch 8 \
    --steps 22000 --lr 5e-4 --loss sdr --coherent 0.5 --valid-every 1000 --threads 1 --gain-min 0.5 --gain-max 1.0
  [ "$OUT" = "$W" ] || ship_encoder "$W" "$OUT"
  rm -f "$OUT/ckpt/chain.pt"
  rtsep train chain "$OUT" --data data/music4-v2 --chain-steps 2 --steps 800 --encoder-lr 1e-4 --threads 2
  rtsep export "$OUT"
  for d in m4v2-muse m4v2-fluid m4v2-style tim-eval; do
    [ -f "data/$d/manifest.json" ] && rtsep eval separate "$OUT" --data "data/$d" --clips 40 --seconds 4 --backend onnx --label "$d"
  done
  python tools/write_card.py "$OUT"
  exit 0
fi
if [ "$SET" = music4-big ]; then
  # Session 24 (issue 26): the shipped models/music4 since then. music4-wide's encoder size (8 blocks, hidden 256)
  # trained from scratch on 1600 generator-v2 songs (data/music4-v3; 14 min to render); models/music4's priors and TF
  # priors, its 2-step chain re-learned with the encoder fine-tuned through it. Affordable live since the encoder
  # graph holds no dense STFT (rtsep.stft_encoder).
  OUT=${OUT:-models/music4}
  [ -f data/music4-v3/manifest.json ] || rtsep data music4 data/music4-v3 --clips 1600 --seconds 8 --seed 0 --meters 4/4,3/4
  v2_eval_data
  W=${W:-runs/m4w}
  [ -f "$W/card.json" ] || copy_priors models/music4 "$W"
  rtsep train encoder "$W" --data data/music4-v3 --objective supervised --front stft --stride 256 --n-fft 1024 --blocks 8 \
    --hidden 256 --bottleneck 128 --segment 16384 --batch 8 --steps 20000 --lr 1e-3 --loss sdr --coherent 0.5 \
    --valid-every 2000 --threads 1 --gain-min 0.5 --gain-max 1.0
  # The chain's numbers, the encoder fine-tuned through it (session 24: runs/m4wc8, 7 min).
  rtsep train chain "$W" --data data/music4-v3 --chain-steps 2 --steps 800 --encoder-lr 1e-4 --threads 1
  rtsep export "$W"
  for d in m4v2-muse m4v2-fluid m4v2-style; do
    rtsep eval separate "$W" --data "data/$d" --clips 40 --seconds 4 --backend onnx --label "$d"
  done
  [ "$OUT" = "$W" ] || ship_encoder "$W" "$OUT" chain langevin separation_eval
  # Session 25: the learned high-band share (44.1/48 kHz input) on 160 training-bank songs at 44.1 kHz (2 min).
  rtsep data music4 data/hb44 --clips 160 --seconds 4 --sample-rate 44100 --seed 7 --meters 4/4,3/4,6/8
  rtsep train highband "$OUT" --data data/hb44 --sample-rate 44100 --threads 2
  rtsep export "$OUT"
  python tools/write_card.py "$OUT"
  echo "now: rtsep bench --model $OUT --provider cpu --seconds 4 --threads 1 --engines onnx --steps 0,2 (record it in the card)"
  exit 0
fi
if [ "$SET" = music4-more ]; then
  # Session 27 (issue 26): the shipped models/music4 since then. music4-big's encoder (runs/m4w, the session-24
  # default) continued 12000 steps at lr 3e-4 on 2.5 times the songs (data/music4-v3 + 2400 seed-2 songs: 4000, 8.2 GB
  # in memory), its 2-step chain re-learned with the encoder fine-tuned through it. CONTROL=1 also runs the same
  # continuation on data/music4-v3 alone (runs/m4c3: no better than its start, research log session 27).
  OUT=${OUT:-models/music4}
  INIT=${INIT:-runs/m4w}
  [ -f data/music4-v3/manifest.json ] || rtsep data music4 data/music4-v3 --clips 1600 --seconds 8 --seed 0 --meters 4/4,3/4
  [ -f data/music4-v3b/manifest.json ] || rtsep data music4 data/music4-v3b --clips 2400 --seconds 8 --seed 2 --meters 4/4,3/4
  merge_data data/music4-v3x data/music4-v3 data/music4-v3b
  v2_eval_data
  pairs="m4x3:music4-v3x"; [ -z "${CONTROL:-}" ] || pairs="m4c3:music4-v3 $pairs"
  for pair in $pairs; do
    W=runs/${pair%%:*}
    [ -f "$W/card.json" ] || copy_priors models/music4 "$W"
    cp models/music4/highband.npz "$W/"  # the card's high-band share, retrained below once the encoder ships
    rtsep train encoder "$W" --data "data/${pair#*:}" --init-from "$INIT" --objective supervised --segment 16384 \
      --batch 8 --steps 12000 --lr 3e-4 --loss sdr --coherent 0.5 --valid-every 2000 --threads 2 --gain-min 0.5 --gain-max 1.0
    rtsep train chain "$W" --data "data/${pair#*:}" --chain-steps 2 --steps 800 --encoder-lr 1e-4 --threads 1
    rtsep export "$W"
    for d in m4v2-muse m4v2-fluid m4v2-style; do
      rtsep eval separate "$W" --data "data/$d" --clips 40 --seconds 4 --backend onnx --label "$d"
    done
  done
  ship_encoder runs/m4x3 "$OUT" chain langevin separation_eval
  [ -f data/hb44/manifest.json ] || rtsep data music4 data/hb44 --clips 160 --seconds 4 --sample-rate 44100 --seed 7 --meters 4/4,3/4,6/8
  rtsep train highband "$OUT" --data data/hb44 --sample-rate 44100 --threads 2
  rtsep export "$OUT"
  python tools/write_card.py "$OUT"
  echo "now: rtsep bench --model $OUT --provider cpu --seconds 4 --threads 1 --engines onnx --steps 0,2 (record it in the card)"
  exit 0
fi
if [ "$SET" = music4-live ]; then
  # The live-size set: music4's encoder with smaller priors (K=4 in real time on one core).
  for s in bass drums guitar piano; do
    rtsep train prior --source "$s" --data data/music4 --out "$OUT" --steps 800 --hidden 16 --flows 4 --layers 3 \
      --gain-min 0.5 --gain-max 1.0 --mixing flip --threads 1
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
    SOURCES="sine square saw triangle"; CLIPS=400; SECONDS_=1; PRIOR_STEPS=1200; GAIN="--gain-min 0.7 --gain-max 1.0"; DATA_FLAGS=""
    ENC_STEPS=${ENC_STEPS:-4000}; ENC_GAIN="--gain-min 1.0 --gain-max 1.0"; KL="--kl-sigma-start 0.3 --kl-sigma 0.01" ;;
  music4)
    SOURCES="bass drums guitar piano"; CLIPS=400; SECONDS_=4; PRIOR_STEPS=1200; GAIN="--gain-min 0.5 --gain-max 1.0"; DATA_FLAGS="--generator v1"
    ENC_STEPS=${ENC_STEPS:-4000}; ENC_GAIN="--gain-min 0.5 --gain-max 1.0"; KL="--kl-sigma-start 0.1 --kl-sigma 0.02" ;;
  *) echo "error: unknown set $SET (toy4 or music4)" >&2; exit 2 ;;
esac
[ -f "data/$SET/manifest.json" ] || rtsep data "$SET" "data/$SET" --clips $CLIPS --seconds $SECONDS_ --seed 0 $DATA_FLAGS
[ -f "data/$SET-eval/manifest.json" ] || rtsep data "$SET" "data/$SET-eval" --clips 400 --seconds $SECONDS_ --seed 99 $DATA_FLAGS
for s in $SOURCES; do
  rtsep train prior --source "$s" --data "data/$SET" --out "$OUT" --steps $PRIOR_STEPS $GAIN --mixing flip
done
rtsep eval priors "$OUT" --data "data/$SET-eval" --json "$OUT/prior_eval.json" --plot "$OUT/prior_eval.png"
# The shipped encoder is the supervised comparison (the seed objective's numbers are lower: README).
# STFT front end (ratio masks, hop 256): better and ~6x faster to train than the learned basis.
ENC="--segment 8192 --front stft --stride 256 --blocks 5"
rtsep train encoder "$OUT" --data "data/$SET" --objective supervised --steps "$ENC_STEPS" $ENC $ENC_GAIN
rtsep eval separate "$OUT" --data "data/$SET-eval" --steps 4 --clips 20 --label supervised
# Seed objective (no stems), same priors, in runs/: annealed KL sigma, the same STFT encoder.
copy_priors "$OUT" "runs/$SET-stft"
rtsep train encoder "runs/$SET-stft" --data "data/$SET" --steps "${SEED_STEPS:-2000}" $KL $ENC $ENC_GAIN
rtsep eval separate "runs/$SET-stft" --data "data/$SET-eval" --steps 4 --clips 20
rtsep export "$OUT"
python tools/write_card.py "$OUT"
