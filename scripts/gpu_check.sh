#!/usr/bin/env bash
# make gpu-check: does the suite work, and work fast, on this machine's GPU?
#
# Without CUDA: exits 2 with one line. With it: runs each check below under its own
# `timeout` (about 8 minutes in all on one GPU), writes runs/gpu-check/<UTC time>/
# report.json and report.md (plus every step's log under logs/), and exits 1 if any check
# failed. Checks: the environment; `bench train` killed mid-epoch and resumed, against an
# uninterrupted run (bit-equal with --deterministic; without it, whether it is); AMP bf16 +
# channels_last and fp16 + compile one-epoch runs (with the compile count); a short `bench
# search` (valid ticket, no environment_mixed) and the supernet's --compile refusal; `bench
# ticket show` with CUDA latency; crowd counting and PSPNet segmentation transfers on the
# bundled samples; the cost table on CUDA; the CUDA benchmarks (ours vs timm seresnet50 with
# AMP + channels_last, ticket vs mmseg ResNetV1c). With 2+ GPUs: torchrun train and search
# on 2 processes, with and without --device.
set -u
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY="$VENV/bin/python"
BENCH="$VENV/bin/bench"

[ -x "$PY" ] || { echo "gpu-check: no $PY here; run make setup first" >&2; exit 2; }
# GPU_CHECK_DEVICE=cpu runs the same steps on the CPU: a dry run of the script itself.
DEV=${GPU_CHECK_DEVICE:-cuda}
if [ "$DEV" != cpu ] &&
    ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null
then
    echo "gpu-check: no CUDA device here (torch.cuda.is_available() is False); nothing to check" >&2
    exit 2
fi

OUT=${GPU_CHECK_OUT:-runs/gpu-check/$(date -u +%Y%m%d-%H%M%S)}
export GPU_CHECK_OUT=$OUT  # the steps that are this script again (--step) write there too
DATA="$OUT/data"
unset TICKETBENCH_KILL_AT TICKETBENCH_PAUSE_AT

# bench train of the check: resnet20-se on 4096 Fashion-MNIST images, 2 epochs of 32
# steps, a checkpoint every 10 steps (the kill at step 45 lands mid-epoch 2).
TRAIN=(train fashion-mnist resnet20-se --mask random:0.5 --data-root "$DATA"
       --train-limit 4096 --heldout 500 --epochs 2 --checkpoint-every 10b)
SEARCH=(search fashion-mnist resnet20-se --data-root "$DATA")
TRANSFER=(transfer --ticket tickets/resnet20-se-fmnist-short.json --pretrained none
          --no-controls --data-root "$DATA" --device "$DEV" --iters 20)
KILL=train.step@45

# ---- steps made of several commands (run as `$0 --step NAME ...`, under `timeout`) -------
check() { "$PY" scripts/gpu_check.py "$@"; }

# A run root whose cost table is the shared one: latency is timed once per network.
root() { mkdir -p "$OUT/$1" && ln -sfn ../costs "$OUT/$1/costs" && echo "$OUT/$1"; }

# kill_resume NAME FLAGS...: an uninterrupted run, the same run SIGKILLed and resumed.
kill_resume() {
    local name=$1 a b rc
    shift
    a=$(root "$name-whole") && b=$(root "$name-killed") || return 1
    "$BENCH" "${TRAIN[@]}" --device "$DEV" "$@" --out "$a" || return 1
    TICKETBENCH_KILL_AT=$KILL "$BENCH" "${TRAIN[@]}" --device "$DEV" "$@" --out "$b"
    rc=$?
    [ "$rc" -eq 137 ] || { echo "the run was not killed at $KILL (exit $rc)"; return 1; }
    "$BENCH" "${TRAIN[@]}" --device "$DEV" "$@" --out "$b" || return 1
    check same "$a" "$b" || return 3  # 3: ran, but computed other bits
}

# Without --deterministic the runs may differ in their last bits: said, not a failure.
kill_resume_default() {
    local out rc
    out=$(kill_resume default 2>&1)
    rc=$?
    printf '%s\n' "$out"
    [ "$rc" -eq 0 ] || [ "$rc" -eq 3 ] || return "$rc"
    echo "without --deterministic (not promised): $(printf '%s\n' "$out" | tail -1)"
}

search_ticket() {
    local ticket="$OUT/search/ticket.json"
    "$BENCH" "${SEARCH[@]}" --device "$DEV" --out "$(root search)" --save-ticket "$ticket" &&
        "$BENCH" ticket validate "$ticket" && check search "$OUT/search" "$ticket"
}

search_compile_refused() {
    local err rc
    err=$("$BENCH" "${SEARCH[@]}" --device "$DEV" --supernet-compile --out "$OUT/refused" 2>&1)
    rc=$?
    echo "exit $rc: $err"
    [ "$rc" -eq 2 ] && [[ "$err" == *"--supernet-compile:"* ]]
}

benchmark_ratios() {
    local dir
    dir=$(ls -d "$OUT"/benchmarks/*/ 2>/dev/null | tail -1)
    check bench "${dir}report.json"
}

torchrun() {  # torchrun COMMAND...: bench COMMAND on 2 processes
    "$PY" -m torch.distributed.run --nproc_per_node 2 --nnodes 1 --master_addr 127.0.0.1 \
        --master_port "${GPU_CHECK_PORT:-29533}" -m bench.cli.main "$@"
}

if [ "${1:-}" = --step ]; then
    shift
    "$@"
    exit $?
fi

# ---- bookkeeping ---------------------------------------------------------------------------
mkdir -p "$OUT/logs" "$OUT/costs"
: >"$OUT/steps.jsonl"

# step NAME LIMIT_S CMD...: CMD under `timeout`, its output in logs/NAME.log, one line of
# steps.jsonl (the log's last line is the detail).
step() {
    local name=$1 limit=$2 t0 rc ms
    shift 2
    t0=$(date +%s%N)
    timeout --kill-after=15 "$limit" "$@" >"$OUT/logs/$name.log" 2>&1
    rc=$?
    ms=$(( ($(date +%s%N) - t0) / 1000000 ))
    "$PY" scripts/gpu_check.py step "$OUT" "$name" "$rc" "$ms"
    echo "gpu-check: $name: $([ "$rc" -eq 0 ] && echo ok || echo "FAILED (exit $rc)")" >&2
}

SELF=("$0" --step)

# ---- the checks ----------------------------------------------------------------------------
step environment 120 "$PY" scripts/gpu_check.py env "$OUT" "$DEV"
step data 300 "$PY" -c "from pathlib import Path; from bench.study.demo import prepare_data; \
print(prepare_data(Path('$DATA')))"

step kill-resume-deterministic 180 "${SELF[@]}" kill_resume det --deterministic
step kill-resume-default 180 "${SELF[@]}" kill_resume_default

step amp-bf16-channels-last 120 "$BENCH" "${TRAIN[@]}" --device "$DEV" --epochs 1 --amp \
    --amp-dtype bf16 --channels-last --out "$(root amp-bf16)"
step amp-fp16-compile 300 env TORCH_LOGS=recompiles "$BENCH" "${TRAIN[@]}" --device "$DEV" \
    --epochs 1 --amp --amp-dtype fp16 --compile --out "$(root amp-fp16-compile)"
step compile-count 30 "$PY" scripts/gpu_check.py recompiles "$OUT/logs/amp-fp16-compile.log"

step search 300 "${SELF[@]}" search_ticket
step search-compile-refused 60 "${SELF[@]}" search_compile_refused

step ticket-show-latency 120 "$BENCH" ticket show resnet50-sge-stage-ean --device "$DEV" \
    --batch 8 --input-size 224

step transfer-crowd-counting 240 "$BENCH" "${TRANSFER[@]}" --task crowd_counting \
    --out "$(root transfer)"
step transfer-segmentation-pspnet 240 "$BENCH" "${TRANSFER[@]}" --task segmentation \
    --decoder pspnet --out "$(root transfer)"

step cost-table 30 "$PY" scripts/gpu_check.py costs "$OUT/costs"

step benchmarks 420 "$PY" -m benchmarks cuda --processes 1 --rounds 5 --out "$OUT/benchmarks"
step benchmark-ratios 30 "${SELF[@]}" benchmark_ratios

GPUS=$("$PY" -c 'import torch; print(torch.cuda.device_count())')
if [ "$DEV" != cpu ] && [ "$GPUS" -ge 2 ]; then
    step torchrun-train-auto 240 "${SELF[@]}" torchrun "${TRAIN[@]}" --out "$(root tr-auto)"
    step torchrun-train-cuda 240 "${SELF[@]}" torchrun "${TRAIN[@]}" --device "$DEV" \
        --out "$(root tr-cuda)"
    step torchrun-search-auto 300 "${SELF[@]}" torchrun "${SEARCH[@]}" \
        --out "$(root tr-search)"
    step torchrun-search-cuda 300 "${SELF[@]}" torchrun "${SEARCH[@]}" --device "$DEV" \
        --out "$(root tr-search-cuda)"
fi

"$PY" scripts/gpu_check.py report "$OUT"
status=$?
echo "gpu-check: report in $OUT/report.md" >&2
exit "$status"
