#!/usr/bin/env bash
# Every GPU measurement of the project, in one run that fits 10 minutes of one H100/H200 (issue 14, item 6).
#
#   bash benchmarks/gpu_suite.sh [--out DIR] [--smoke] [--only ITEM[,ITEM...]]
#
# Items (each under its own `timeout`, with 10 s more for a kill after its TERM; the timeouts add up to
# 540 s, at worst 580 s with the kills, plus the few seconds of the device query and the appends):
#   loss        benchmarks/bench_loss.py on cuda: tiled vs the two dense SupCon losses, n = 8192 ... 65536,
#               d = 128, float32: peak CUDA memory and median time of forward+backward (dense sizes whose
#               estimate exceeds 70% of the GPU's memory are skipped and reported)            timeout 180 s
#   train_step  benchmarks/bench_train_step.py on cuda: CIFAR-style ResNet-18 (width 64), 32x32 random
#               images, batch 512 x 2 views: fp32 (strict, and torch's default) vs bf16 autocast +
#               channels_last, images/s, steps/s, peak memory; and the loss alone at batch 1024..8192  90 s
#   kini_fig3   `nctheory train --config experiments/kini_fig3.json` (ResNet-18 width 64, full-batch SCL +
#               ReLU, R in {1, 10, 100}) for $KINI_EPOCHS epochs (default 100; the paper shows 500)  150 s
#   gill_fig3   `nctheory train --config experiments/gill_fig3.json` (ResNet-18 + projector, Prop. 1 limit
#               loss, three prototype geometries) for $GILL_EPOCHS epochs (default 60, milestones scaled
#               from 200/300 of 350)                                                                 120 s
# The epoch counts are estimates made without a GPU (none was lent when this was written): each item's
# wall time is in OUT/status.tsv, so the next run can size them (KINI_EPOCHS=..., GILL_EPOCHS=...).
#
# Results: OUT (default benchmarks/gpu_results/<UTC date-time>) holds each item's JSON / log / run folders,
# status.tsv (item, exit code, seconds, timeout) and SUMMARY.md; each item that succeeded is appended, with
# the device name (torch.cuda.get_device_name), to its RESULTS file: benchmarks/RESULTS-loss.md,
# benchmarks/RESULTS-train-step.md, experiments/RESULTS.md. The suite exits 1 if any item failed (or
# timed out), 2 on bad arguments or when no CUDA device is present (without --smoke).
#
# --smoke: every item for one step at a tiny size on the CPU (no CUDA needed); the RESULTS sections are
# written to OUT/RESULTS-*.md instead of the committed files (tests/test_gpu_suite_smoke.py runs it).
# PYTHON (default: python) is the interpreter; the tree's nctheory is put first on PYTHONPATH.

set -u -o pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python}"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export MPLBACKEND="${MPLBACKEND:-Agg}"

SMOKE=0
OUT=""
ONLY=""
ITEMS=(loss train_step kini_fig3 gill_fig3)
while [ $# -gt 0 ]; do
    case "$1" in
        --smoke) SMOKE=1; shift ;;
        --out) [ $# -ge 2 ] || { echo "gpu_suite.sh: --out needs a folder" >&2; exit 2; }; OUT="$2"; shift 2 ;;
        --out=*) OUT="${1#--out=}"; shift ;;
        --only) [ $# -ge 2 ] || { echo "gpu_suite.sh: --only needs item names" >&2; exit 2; }; ONLY="$2"; shift 2 ;;
        -h|--help) sed -n '2,/^$/p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "gpu_suite.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
    esac
done
if [ -n "$ONLY" ]; then
    IFS=',' read -r -a WANT <<< "$ONLY"
    for w in "${WANT[@]}"; do
        case " ${ITEMS[*]} " in *" $w "*) ;; *) echo "gpu_suite.sh: unknown item '$w' (items: ${ITEMS[*]})" >&2; exit 2 ;; esac
    done
    ITEMS=("${WANT[@]}")
fi
STAMP="$(date -u +%Y%m%d-%H%M%S)"
OUT="${OUT:-$ROOT/benchmarks/gpu_results/$STAMP}"
mkdir -p "$OUT" || { echo "gpu_suite.sh: cannot create $OUT" >&2; exit 2; }
OUT="$(cd "$OUT" && pwd)"

if [ "$SMOKE" = 1 ]; then
    DEVICE=cpu
    DEVICE_NAME="CPU smoke run (tiny sizes; not a measurement)"
    RES_LOSS="$OUT/RESULTS-loss.md"; RES_STEP="$OUT/RESULTS-train-step.md"; RES_EXP="$OUT/RESULTS.md"
    KINI_EPOCHS=1; GILL_EPOCHS=1
else
    DEVICE=cuda
    if ! DEVICE_NAME="$("$PY" -c 'import torch; assert torch.cuda.is_available(); print(torch.cuda.get_device_name(0))' 2>/dev/null)"; then
        echo "gpu_suite.sh: no CUDA device visible to $PY (torch.cuda.is_available() is false); use --smoke on a CPU" >&2
        exit 2
    fi
    RES_LOSS="$ROOT/benchmarks/RESULTS-loss.md"; RES_STEP="$ROOT/benchmarks/RESULTS-train-step.md"
    RES_EXP="$ROOT/experiments/RESULTS.md"
    KINI_EPOCHS="${KINI_EPOCHS:-100}"; GILL_EPOCHS="${GILL_EPOCHS:-60}"
fi
TORCH_VERSION="$("$PY" -c 'import torch; print(torch.__version__)' 2>/dev/null || echo unknown)"
echo "$DEVICE_NAME" > "$OUT/device.txt"
printf 'item\texit\tseconds\ttimeout_s\n' > "$OUT/status.tsv"
echo "gpu_suite: device $DEVICE_NAME, torch $TORCH_VERSION, out $OUT" >&2

# The `--at` epochs of a comparison table: 1, E/10, E/2, E (distinct, >= 1).
at_epochs() {
    local e=$1
    printf '%s\n' 1 $((e / 10)) $((e / 2)) "$e" | awk '$1 >= 1' | sort -n -u | paste -sd, -
}

# Append one section to a RESULTS file: heading with the date and device, the command, then stdin.
append_result() {
    local file=$1 title=$2 cmd=$3 seconds=$4
    cmd="${cmd//$ROOT\//}"  # paths relative to the tree
    {
        echo
        echo "## $title: GPU suite, $(date -u '+%Y-%m-%d %H:%M UTC'), $DEVICE_NAME"
        echo
        echo "Device: $DEVICE_NAME (torch $TORCH_VERSION). Run by \`bash benchmarks/gpu_suite.sh$([ "$SMOKE" = 1 ] && echo ' --smoke')\`"
        echo "as \`${cmd% }\` ($seconds s wall, including start-up). Raw results: \`${OUT#$ROOT/}\`."
        echo
        cat
    } >> "$file"
}

# ---------------------------------------------------------------------------------------------- items
item_loss() {
    if [ "$SMOKE" = 1 ]; then
        CMD=("$PY" "$ROOT/benchmarks/bench_loss.py" --smoke --device cpu --json "$OUT/loss.json")
    else
        # bench_loss skips a dense size whose estimate exceeds mem_fraction x host MemAvailable; make that
        # budget 70% of the GPU's memory instead
        local frac
        frac="$("$PY" -c '
import torch
gpu = torch.cuda.get_device_properties(0).total_memory / 2**20
host = next(int(l.split()[1]) / 1024 for l in open("/proc/meminfo") if l.startswith("MemAvailable:"))
print(f"{0.7 * gpu / host:.4f}")')" || return 1
        CMD=("$PY" "$ROOT/benchmarks/bench_loss.py" --device cuda --sizes 8192,16384,32768,65536 --repeats 3
             --mem-fraction "$frac" --json "$OUT/loss.json")
    fi
    "${CMD[@]}" > "$OUT/loss.log" 2>&1
}
result_loss() {
    grep '^|' "$OUT/loss.log" | append_result "$RES_LOSS" "SupCon loss at scale (tiled vs dense)" "${CMD[*]}" "$1"
}

item_train_step() {
    if [ "$SMOKE" = 1 ]; then
        CMD=("$PY" "$ROOT/benchmarks/bench_train_step.py" --tiny --device cpu --json "$OUT/train_step.json")
    else
        CMD=("$PY" "$ROOT/benchmarks/bench_train_step.py" --device cuda --batch 512 --json "$OUT/train_step.json")
    fi
    "${CMD[@]}" > "$OUT/train_step.log" 2>&1
}
result_train_step() {
    { echo '```'; cat "$OUT/train_step.log"; echo '```'; } \
        | append_result "$RES_STEP" "SCL training step, fp32 vs bf16 autocast + channels_last" "${CMD[*]}" "$1"
}

# One paper-figure config: nctheory train (the whole sweep), then the table of its runs at 1, E/10, E/2, E
# (columns: METRICS, a comma list of metrics.csv columns; epoch_seconds sizes the next suite).
train_config() {
    local name=$1 config=$2 epochs=$3 metrics=$4
    shift 4
    CMD=("$PY" -m nctheory train --config "$ROOT/experiments/$config" --out "$OUT/$name" --device "$DEVICE"
         --epochs "$epochs" --no-progress "$@")
    "${CMD[@]}" > "$OUT/$name.log" 2>&1 || return 1
    local runs=() m args=()
    for d in "$OUT/$name"/*/; do [ -f "$d/metrics.csv" ] && runs+=("$name/$(basename "$d")"); done
    [ ${#runs[@]} -gt 0 ] || { echo "no run folder with metrics.csv in $OUT/$name" >> "$OUT/$name.log"; return 1; }
    IFS=',' read -r -a m <<< "$metrics"
    for c in "${m[@]}"; do args+=(--metric "$c"); done
    (cd "$OUT" && "$PY" -m nctheory compare "${runs[@]}" "${args[@]}" --at "$(at_epochs "$epochs")" --markdown \
        --out "${name}_compare.png") > "$OUT/$name.compare.txt" 2>> "$OUT/$name.log" || return 1
    grep '^|' "$OUT/$name.compare.txt" > "$OUT/$name.md"
}

item_kini_fig3() {
    if [ "$SMOKE" = 1 ]; then
        train_config kini_fig3 kini_fig3.json 1 "$KINI_METRICS" --width 4 --n-max 20 --eval-every 1 \
            --set 'sweep=[{"name": "R10", "imbalance": "step", "ratio": 10.0}]'
    else
        train_config kini_fig3 kini_fig3.json "$KINI_EPOCHS" "$KINI_METRICS" --eval-every $(( KINI_EPOCHS >= 10 ? KINI_EPOCHS / 10 : 1 ))
    fi
}
result_kini_fig3() {
    append_result "$RES_EXP" "Kini et al. Fig. 3 (full-batch SCL + ReLU, ResNet-18, $KINI_EPOCHS epochs)" "${CMD[*]}" "$1" \
        < "$OUT/kini_fig3.md"
}

item_gill_fig3() {
    local m1=$(( GILL_EPOCHS * 200 / 350 )) m2=$(( GILL_EPOCHS * 300 / 350 ))
    [ "$m1" -ge 1 ] || m1=1
    [ "$m2" -gt "$m1" ] || m2=$((m1 + 1))
    if [ "$SMOKE" = 1 ]; then
        train_config gill_fig3 gill_fig3.json 1 "$GILL_METRICS" --width 4 --n-max 20 --eval-every 1 --set "milestones=[$m1, $m2]" \
            --set 'sweep=[{"name": "etf", "prototypes": "etf"}]'
    else
        train_config gill_fig3 gill_fig3.json "$GILL_EPOCHS" "$GILL_METRICS" --set "milestones=[$m1, $m2]" \
            --eval-every $(( GILL_EPOCHS >= 10 ? GILL_EPOCHS / 10 : 1 ))
    fi
}
result_gill_fig3() {
    append_result "$RES_EXP" "Gill et al. Fig. 3 (Prop. 1 limit loss, three prototype geometries, $GILL_EPOCHS epochs)" \
        "${CMD[*]}" "$1" < "$OUT/gill_fig3.md"
}

KINI_METRICS=loss,bound,excess,delta_to_of,beta_nc,mean_class_cosine,ncc_test,epoch_seconds
GILL_METRICS=loss,delta_to_prototypes,delta_to_etf,beta_nc,ncc_test,epoch_seconds
declare -A TIMEOUT=([loss]=180 [train_step]=90 [kini_fig3]=150 [gill_fig3]=120)
declare -A RESULT_FILE=([loss]=loss.json [train_step]=train_step.json [kini_fig3]=kini_fig3.md [gill_fig3]=gill_fig3.md)

# ---------------------------------------------------------------------------------------------- run
FAILED=()
for item in "${ITEMS[@]}"; do
    t=${TIMEOUT[$item]}
    echo "gpu_suite: $item (timeout $t s) ..." >&2
    start=$(date +%s)
    # each item runs in its own shell under `timeout`, so that a hung item is killed with all its children
    export -f "item_$item" train_config at_epochs
    export ROOT PY OUT SMOKE DEVICE KINI_EPOCHS GILL_EPOCHS KINI_METRICS GILL_METRICS
    timeout --kill-after=10 "$t" bash -c "set -u -o pipefail; item_$item; rc=\$?; printf '%q ' \"\${CMD[@]}\" > '$OUT/$item.cmd'; exit \$rc"
    rc=$?
    secs=$(( $(date +%s) - start ))
    printf '%s\t%s\t%s\t%s\n' "$item" "$rc" "$secs" "$t" >> "$OUT/status.tsv"
    if [ "$rc" -eq 0 ] && [ -s "$OUT/${RESULT_FILE[$item]}" ]; then
        CMD=("$(cat "$OUT/$item.cmd")")  # the command as run, shell-quoted
        "result_$item" "$secs"
        echo "gpu_suite: $item ok ($secs s)" >&2
    else
        [ "$rc" -eq 124 ] && why="timed out after $t s" || why="exit $rc"
        [ "$rc" -eq 0 ] && why="no result file ${RESULT_FILE[$item]}"
        FAILED+=("$item")
        echo "gpu_suite: $item FAILED ($why; see $OUT/$item.log)" >&2
    fi
done

{
    echo "# GPU suite $STAMP"
    echo
    echo "Device: $DEVICE_NAME (torch $TORCH_VERSION)$([ "$SMOKE" = 1 ] && echo '; --smoke')"
    echo
    echo "| item | exit | seconds | timeout s |"
    echo "|---|---|---|---|"
    tail -n +2 "$OUT/status.tsv" | awk -F'\t' '{printf "| %s | %s | %s | %s |\n", $1, $2, $3, $4}'
    echo
    if [ ${#FAILED[@]} -eq 0 ]; then echo "All items succeeded."; else echo "Failed: ${FAILED[*]}."; fi
} > "$OUT/SUMMARY.md"
cat "$OUT/SUMMARY.md" >&2
[ ${#FAILED[@]} -eq 0 ] || exit 1
exit 0
