#!/usr/bin/env bash
# The training campaign (issue 12): the shipped checkpoints trained far (≥ 30× the first budget:
# 100k steps at batch 64), in resumable segments that survive a fresh clone.
#
#   bash checkpoints/campaign.sh list                       # the entries and their state
#   bash checkpoints/campaign.sh run dsprites/devae [MIN]   # train one segment of MIN minutes (default 60)
#   bash checkpoints/campaign.sh ship dsprites/devae        # fp16 weights + card into checkpoints/, evaluate
#   kill PID                                                # stop a running segment early: it saves first (exit 130)
#
# Where a run lives: runs/campaign/<entry>/ holds the full resume state (weights, Adam state, RNG:
# bit-exact --resume). It is not in git. In a fresh clone the segment starts instead from the
# shipped weights in checkpoints/<entry>/ (a card marked with this campaign entry) with a fresh
# optimiser; the engine records the step of every such reset in card.train.segments /
# optimizer_resets. A folder never shipped from the campaign starts from scratch with seed 0.
#
# Precision: bf16 autocast on the CPU too (AMP=bf16, the A/B in checkpoints/README.md; on CUDA
# "auto" is bf16 as well). One thread per run (OMP_NUM_THREADS=1): two runs use both cores.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
RUNS=${RUNS:-runs/campaign}
AMP=${AMP:-bf16}
TRACK=${TRACK:-1000}  # information-diffusion (and MIG) track every TRACK steps
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

# entry -> "model dataset steps seed [train options...]"; seed 0 is fixed before training.
declare -A ENTRY=(
    # DeVAE: lr 5e-4 to 35,000 steps, then the paper's 1e-4 (fresh optimiser; README segment 7), dSprites seed 0
    # then the paper's batch 256 from 50,000 steps (segment 8); the
    # entries hold the rate and batch a continued segment uses now
    [dsprites/devae]="devae dsprites 100000 0 --batch-size 256 --set lr=0.0001"
    [dsprites/deft]="deft dsprites 100000 0 --batch-size 64 --set lr=0.0005"
    [dsprites/betatcvae]="betatcvae dsprites 100000 0 --batch-size 64 --set lr=0.0005"
    # β = 6: the DeVAE paper's β-VAE baseline (β = 4, the config default, measured MIG 0.096 at 35.8k; README)
    [dsprites/betavae]="betavae dsprites 300000 0 --batch-size 64 --set lr=0.0005 --set beta=6"
    [dsprites/qlae]="qlae dsprites 100000 0 --batch-size 64 --set arch=conv"
    [dsprites/ae]="ae dsprites 100000 0 --batch-size 64 --set arch=conv"
    # lr 5e-4 to 43,946 steps, then 1e-4 (fresh optimiser; README segment 7), then the paper's batch 256
    # from 57,543 steps (fresh optimiser; segment 10)
    [shapes3d/devae]="devae shapes3d 100000 0 --batch-size 256 --set lr=0.0001"
    [shapes3d/qlae]="qlae shapes3d 100000 0 --batch-size 64 --set arch=conv"
    # DiD (issue 13): narrowed to CPU widths (G/critic 16, E/H base 8) [I]; batch 160 = 5 critic chunks of 32.
    # Issue 33: retrained from scratch with one code per factor (latent_dim 5 / 6) [I]; steps = the images of the
    # issue-13 runs (1.17 M / 0.90 M) at batch 160; the shipped runs tracked diffusion every 500 steps (TRACK=500)
    [dsprites/did]="did dsprites 7400 0 --batch-size 160 --set base_channels=8 --set hidden=128 --set latent_dim=5"
    [shapes3d/did]="did shapes3d 5700 0 --batch-size 160 --set base_channels=8 --set hidden=128 --set latent_dim=6"
    [shapes3d/betavae]="betavae shapes3d 100000 0 --batch-size 64 --set lr=0.0005"
    # second seeds, reported beside the shipped seed 0 (checkpoints/seeds/ is not opened by default)
    [seeds/dsprites/devae-seed1]="devae dsprites 100000 1 --batch-size 64 --set lr=0.0001"  # seed 0's recipe
    [seeds/dsprites/deft-seed1]="deft dsprites 100000 1 --batch-size 64 --set lr=0.0005"
)

usage() { sed -n '2,10p' "$0"; exit 2; }
need() { [ -n "${ENTRY[$1]+x}" ] || { echo "error: unknown entry '$1'; see: bash $0 list" >&2; exit 2; }; }

run_segment() {
    local key=$1 minutes=${2:-60}
    need "$key"
    read -r model dataset steps seed opts <<<"${ENTRY[$key]}"
    local work="$RUNS/$key" shipped="checkpoints/$key" mode=()
    if [ -f "$work/card.json" ]; then
        mode=(--resume)
    elif [ -f "$shipped/card.json" ] && grep -q "\"campaign\": \"$key\"" "$shipped/card.json"; then
        mkdir -p "$(dirname "$work")"
        cp -r "$shipped" "$work"
        mode=(--reset-optimizer)
        echo "continuing the shipped $key from its weights with a fresh optimiser"
    fi
    echo "== $key: $model on $dataset, $steps steps, seed $seed, $minutes min, amp $AMP ${mode[*]}"
    # shellcheck disable=SC2086  # opts is a list of options
    "$PY" -m disviz train --model "$model" --dataset "$dataset" --steps "$steps" --seed "$seed" \
        --out "$work" --amp "$AMP" --save-every 500 --track-diffusion "$TRACK" --time-limit "$minutes" \
        --no-progress "${mode[@]}" $opts || [ $? -eq 130 ]  # 130: stopped at the time limit, saved
}

ship_entry() {
    local key=$1
    need "$key"
    local work="$RUNS/$key" shipped="checkpoints/$key"
    [ -f "$work/card.json" ] || { echo "error: no campaign run in $work; train it first: bash $0 run $key" >&2; exit 2; }
    local tmp="$shipped.campaign-tmp"
    rm -rf "$tmp"
    mkdir -p "$(dirname "$shipped")"
    cp -r "$work" "$tmp"
    rm -f "$tmp"/.*.lock
    "$PY" checkpoints/ship.py --dtype float16 --campaign "$key" "$tmp"
    "$PY" -m disviz evaluate "$tmp" --n 10000 --seed 0 --preset fast >/dev/null
    rm -rf "$shipped.old"
    [ -d "$shipped" ] && mv "$shipped" "$shipped.old"
    mv "$tmp" "$shipped"
    rm -rf "$shipped.old"
    echo "shipped $key -> $shipped"
}

card_steps() {  # the trained step count of a checkpoint folder, or "-"
    "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["steps"])' "$1/card.json" 2>/dev/null || echo "-"
}

list_entries() {
    for key in $(printf '%s\n' "${!ENTRY[@]}" | sort); do
        local state="not started"
        if [ -f "checkpoints/$key/card.json" ] && grep -q "\"campaign\": \"$key\"" "checkpoints/$key/card.json"; then
            state="shipped at step $(card_steps "checkpoints/$key")"
        fi
        [ -f "$RUNS/$key/card.json" ] && state="$state; local run at step $(card_steps "$RUNS/$key")"
        printf '%-30s %-60s %s\n' "$key" "${ENTRY[$key]}" "$state"
    done
}

case "${1:-}" in
    run) [ $# -ge 2 ] || usage; run_segment "$2" "${3:-60}" ;;
    ship) [ $# -ge 2 ] || usage; ship_entry "$2" ;;
    list) list_entries ;;
    *) usage ;;
esac
