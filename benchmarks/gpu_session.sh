#!/usr/bin/env bash
# What learnrecon runs on a lent GPU machine (the workplace's `device` tool), from the repository root.
#
#   bash benchmarks/gpu_session.sh check          correctness (benchmarks/gpu_check.py), the operator and
#                                                 training-throughput benchmarks on CUDA, and a 30 s trial of
#                                                 the runs configs/<run>_gpu.yaml side by side
#   bash benchmarks/gpu_session.sh train MINUTES  those runs side by side, each stopped after MINUTES,
#                                                 and gpu_check.py again beside them
#   bash benchmarks/gpu_session.sh fit MINUTES    a 45 s trial of the runs first, from which
#                                                 scripts/fit_steps.py sets each config's training.steps so
#                                                 its cosine ends by 94 % of MINUTES; then `train MINUTES`
#                                                 (the configs as trained come back in $OUT/configs)
#
# The runs are $GPU_RUNS, by default the shipped ellipse models and the DIVal LPD continued
# (lpd_ellipses lgd_ellipses fbpconvnet_ellipses lpd_dival); run R trains configs/R_gpu.yaml into runs/gpu/R.
# GPU_CHECK=0 leaves gpu_check.py out of `train` (for a second call in a session that has run it).
#
# The machine has torch but not PyWavelets: its wheel travels in .whl/ (see docs/gpu.md). Results land in
# benchmarks/results/ and runs/gpu*/; when $OUT is set (the device tool) they are packed into $OUT/*.tar.gz.*,
# during training every minute, so a run cut off still returns its checkpoints.
set -u
mode=${1:?usage: gpu_session.sh check | train MINUTES | fit MINUTES}
export PYTHONPATH=$PWD/src PYTHONUNBUFFERED=1
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=$PYTHONPATH:/tmp/site
fi
gpu_runs=${GPU_RUNS:-"lpd_ellipses lgd_ellipses fbpconvnet_ellipses lpd_dival"}
gpu_check=${GPU_CHECK:-1}

pack() {  # pack NAME PATH...: PATHs into $OUT/NAME.tar.gz.0, .1, ... (15 MiB parts: the device returns at most
    [ -n "${OUT:-}" ] || return 0  # 8 files of 16 MiB, 64 MiB in all; rejoin with cat NAME.tar.gz.* | tar xz)
    local name=$1 parts=$OUT/.parts
    shift
    mkdir -p "$parts" && rm -f "$parts/$name".tar.gz*
    tar czf "$parts/$name.tar.gz" --exclude=tensorboard "$@" 2>/dev/null || return 0
    split -b 15M -d -a 1 "$parts/$name.tar.gz" "$parts/$name.tar.gz." && rm "$parts/$name.tar.gz"
    rm -f "$OUT/$name".tar.gz.*
    mv "$parts/$name".tar.gz.* "$OUT/"
}

pack_runs() {  # pack_runs FOLDER: an archive per run: its logs, its best weights as float16 (best16, to ship
    for m in $gpu_runs; do  # or start from) and its last checkpoint with the Adam state (to resume from)
        python3 scripts/ship_pretrained.py "$1/$m" best16 --out "$1/$m" >/dev/null 2>&1
        pack "$m" --exclude='best.*' "$1/$m" "$1/$m.log"
    done
}

side_by_side() {  # side_by_side FOLDER MINUTES: train the GPU runs at once into FOLDER/<run>
    mkdir -p "$1"
    for m in $gpu_runs; do
        python3 -m learnrecon.cli train --config "configs/${m}_gpu.yaml" --out "$1/$m" \
            --max-minutes "$2" --quiet >"$1/$m.log" 2>&1 &
    done
}

report() {  # report FOLDER: steps, seconds and best validation of each run
    for m in $gpu_runs; do
        echo "== $m: $(tail -n 1 "$1/$m.log")"
        tail -n 1 "$1/$m/metrics.csv" 2>/dev/null
        tail -n 2 "$1/$m/validation.csv" 2>/dev/null
    done
}

train_runs() {  # train_runs MINUTES: the GPU runs side by side into runs/gpu, packed every minute and at the end
    # A call on a machine still warm from the last one finds that call's runs (already packed and returned):
    # they move aside, so this round starts as its configs say instead of being refused.
    [ -d runs/gpu ] && mv runs/gpu "runs/gpu-before-$(date +%Y%m%d-%H%M%S)"
    side_by_side runs/gpu "$1"
    if [ "$gpu_check" != 0 ]; then  # correctness again, beside them
        timeout 200 python3 benchmarks/gpu_check.py >runs/gpu/gpu_check.log 2>&1 &
    fi
    for ((i = 1; ; i++)); do
        [ -z "$(jobs -r)" ] && break
        sleep 5
        ((i % 12)) || pack_runs runs/gpu
    done
    wait
    report runs/gpu
    pack_runs runs/gpu
    if [ "$gpu_check" != 0 ]; then
        tail -n 3 runs/gpu/gpu_check.log
        pack results --exclude='*.safetensors' benchmarks/results runs/gpu/gpu_check.log
    fi
    rmdir "${OUT:-/nonexistent}/.parts" 2>/dev/null || true  # without $OUT there is none
}

case $mode in
check)
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv
    python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
    timeout 120 python3 benchmarks/gpu_check.py
    timeout 150 python3 benchmarks/operators.py --cases a,b,fan,c --repeats 20 --device cuda --no-astra --no-deepinv
    timeout 45 python3 benchmarks/training.py --steps 20 --device cuda
    timeout 45 python3 benchmarks/training.py --steps 20 --device cuda --amp
    side_by_side runs/gpu-trial 0.5
    wait
    report runs/gpu-trial
    pack results --exclude='*.safetensors' benchmarks/results runs/gpu-trial
    rmdir "${OUT:-/nonexistent}/.parts" 2>/dev/null || true  # without $OUT there is none
    ;;
fit)
    minutes=${2:?usage: gpu_session.sh fit MINUTES}
    rm -rf runs/gpu-trial
    side_by_side runs/gpu-trial 0.75
    wait
    python3 scripts/fit_steps.py runs/gpu-trial "$(python3 -c "print($minutes * 0.944)")" $gpu_runs || exit 1
    if [ -n "${OUT:-}" ]; then
        mkdir -p "$OUT/configs" && for m in $gpu_runs; do cp "configs/${m}_gpu.yaml" "$OUT/configs/"; done
    fi
    train_runs "$minutes"
    ;;
train)
    train_runs "${2:?usage: gpu_session.sh train MINUTES}"
    ;;
*)
    echo "unknown mode $mode" >&2
    exit 2
    ;;
esac
