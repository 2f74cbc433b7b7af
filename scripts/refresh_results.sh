#!/usr/bin/env bash
# Re-run every evaluation and benchmark behind the README's results section, then regenerate it.
#
#   bash scripts/refresh_results.sh                 # shipped models only
#   RESUNET=runs/resunet/checkpoint SINGLE=runs/sep_9750 HIER=runs/hier/checkpoint \
#   CODECFORMER=src/codecsep/assets/codecformer-default CODESEP=checkpoints/codesep-mdct \
#   CURVES="codecsep=runs/sep resunet=runs/resunet" bash scripts/refresh_results.sh
#   PEERS=0 CODEC=0 bash scripts/refresh_results.sh  # after swapping the default separator only
#
# Needs the corpus (data/corpus, `codecsep corpus build`); evaluation sets are written on first
# use into data/eval. Two lanes run side by side (2 cores): the shipped model's main protocols and
# benches, and its variants followed by the peers; each step is resumable.
set -euo pipefail
CS=${CODECSEP:-.venv/bin/codecsep}
OW=--overwrite

lane_shipped() {
  for p in two_source three_source dnr; do
    $CS eval --model codecsep --protocol $p --visqol --semantic $OW
  done
  for p in two_source three_source; do
    $CS eval --model codecsep --protocol $p --prompt-mode heldout $OW
    $CS eval --model codecsep --protocol $p --prompt-mode heldout --anchor-weight 0 $OW  # anchoring off
    for m in label heldout; do  # effects from packages the corpus never used (session 25)
      $CS eval --model codecsep --protocol $p --split unseen --prompt-mode $m $OW
    done
  done
  [[ ${CODEC:-1} == 0 ]] || $CS bench codec --codec mica --manifest data/corpus/manifest.jsonl --split test --n-per-category 10 \
    --seconds 4 --rtf-seconds 10 --repeats 5 --n-quantizers 1 2 4 6 8 12 16 --visqol-at 6kbps $OW
}

lane_variants() {  # the shipped model's other prompts, tasks, maskers and the code-stream path
  $CS eval --model codecsep --protocol two_source --task remove $OW
  for p in two_source three_source; do  # each waveform masker alone: 1 = the default before session
    for m in 1 2 1,2; do                  # 12, 2 = the band-split masker; 1,2 = the mean of the two
      $CS eval --model codecsep --protocol $p --members $m $OW  # (the default of sessions 12-17)
    done
    $CS eval --model codecsep --protocol $p --postfilter 0 $OW  # without the post-filter (session 18)
    $CS eval --model codecsep --protocol $p --postfilter 4096,1.25 $OW  # its analytic ratio only (sessions 19-26)
    # the code-stream path at 6 kbps: codes in -> codes out (the checkpoint's code_members), decoded
    $CS eval --model codecsep-codes:@12 --protocol $p --visqol $OW
    # ... and against the codec's rendition of each source at 12 codebooks (codec-SI-SDR)
    $CS eval --model codecsep-codes:@12 --protocol $p --reference codec $OW
  done
}

lane_peers() {
  if [[ -n "${RESUNET:-}" ]]; then
    for p in two_source three_source dnr; do
      $CS eval --model "resunet:$RESUNET" --protocol $p --visqol --semantic $OW
    done
    $CS eval --model "resunet:$RESUNET" --protocol two_source --prompt-mode heldout $OW
  fi
  if [[ -n "${SINGLE:-}" && -n "${HIER:-}" ]]; then  # single- vs two-stage, same start and steps
    for m in "$SINGLE" "$HIER"; do
      for p in two_source three_source; do
        $CS eval --model "codecsep:$m" --protocol $p --semantic $OW
      done
    done
  fi
  for p in two_source three_source dnr; do
    $CS eval --model mixture --protocol $p --visqol --semantic $OW
    $CS eval --model oracle-mdct-irm --protocol $p --visqol --semantic $OW
  done
  # the codec ceiling: each reference through Mica's continuous path and at 6 kbps (12 codebooks)
  for p in two_source three_source dnr; do
    $CS eval --model codec-ceiling:mica@12 --protocol $p --visqol $OW
    $CS eval --model codec-ceiling:mica --protocol $p $([[ $p == two_source ]] && echo --visqol) $OW
  done
  if [[ -n "${CODECFORMER:-}${CODESEP:-}" ]]; then
    $CS speech eval ${CODECFORMER:+--codecformer "$CODECFORMER"} ${CODESEP:+--codesep "$CODESEP"} --n 40 $OW
  fi
}

LOGS=${LOG_DIR:-runs}; mkdir -p "$LOGS"
lane_shipped > "$LOGS/refresh-shipped.log" 2>&1 &
{ lane_variants; [[ ${PEERS:-1} == 0 ]] || lane_peers; } > "$LOGS/refresh-peers.log" 2>&1 &
wait
$CS bench deploy --n 100 $OW  # the timed benches run alone on the machine
$CS bench  # cost table
if [[ -n "${CURVES:-}" ]]; then
  args=(); for c in $CURVES; do args+=(--run "$c"); done
  $CS curves "${args[@]}"
fi
$CS report
