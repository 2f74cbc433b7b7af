#!/usr/bin/env bash
# More draws of the TEST protocols for one model, and their pooled means.
#
#   bash scripts/test_draws.sh codecsep results/eval/draws/codecsep 1 2 3 4
#
# One 100-mixture draw (seed 0, `results/eval/...`) gives a paired CI of about +-0.3 dB between two
# models and an unpaired one of about +-2.3 dB; each extra seed draws 100 more mixtures from the
# same TEST clips (label and held-out prompts, two- and three-source), into OUT/<protocol>-test-seedS[-heldout].
# Pool them with the seed-0 folder: `codecsep compare A0 B0 A1 B1 ...` (paired, two models), or
# `python scripts/pool_draws.py FOLDER...` (one model's pooled mean).
set -euo pipefail
CS=${CODECSEP:-.venv/bin/codecsep}
model=$1 out=$2; shift 2
for s in "$@"; do
  for mode in label heldout; do
    for p in two_source three_source; do
      suf=-test-seed$s; [[ $mode == heldout ]] && suf=$suf-heldout
      [[ -f $out/$p$suf/summary.json ]] || $CS eval --model "$model" --protocol $p --split test --seed "$s" \
        --prompt-mode $mode --threads 1 --out "$out/$p$suf"
    done
  done
done
find "$out" -name examples.png -delete
