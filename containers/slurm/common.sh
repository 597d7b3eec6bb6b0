# shellcheck shell=bash disable=SC2034  # RUNNER, TAGSMITH, TORCHRUN_TARGET, SET_ARGS are for the job scripts
# Shared by the *.sbatch scripts (sourced, not run): settings, how to run a command natively or in the
# container, and the signal -> checkpoint -> requeue loop.
#
# sbatch runs a copy of the job script from its spool directory, so the scripts find this file through
# TAGSMITH_SLURM_DIR (set by ./jobs) or the directory the job was submitted from (the project root).

# The trainer's exit status after it saved a checkpoint on SIGUSR1/SIGTERM: "run me again with --resume".
readonly EXIT_RESUMABLE=75

SLURM_SCRIPTS_DIR=${TAGSMITH_SLURM_DIR:-${SLURM_SUBMIT_DIR:-$PWD}/containers/slurm}

log() { printf '[%(%F %T)T] [tagsmith-slurm] %s\n' -1 "$*"; }

load_config() {
    # shellcheck source=config.env
    source "$SLURM_SCRIPTS_DIR/config.env"
    cd "$PROJECT_DIR" || exit 2
    mkdir -p "$RUNS_DIR" "$TAGSMITH_CACHE"
    export TAGSMITH_CACHE HF_HUB_OFFLINE
    export HF_HOME=${HF_HOME:-$TAGSMITH_CACHE/huggingface}
    export PIP_CACHE_DIR=${PIP_CACHE_DIR:-$TAGSMITH_CACHE/pip}
    export MPLCONFIGDIR=${MPLCONFIGDIR:-$TAGSMITH_CACHE/matplotlib}
    export PYTHONUNBUFFERED=1
    # One thread per allocated CPU: without cgroups nothing else stops torch from using every core of a node.
    if [[ -n ${SLURM_CPUS_PER_TASK:-} ]]; then export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$SLURM_CPUS_PER_TASK}; fi
    set_runner
    set_override_args
    log "job ${SLURM_JOB_ID:-none} on $(hostname -s), restart ${SLURM_RESTART_COUNT:-0}, container=$CONTAINER"
}

# RUNNER: the command prefix that puts the project's Python environment in front of a command:
# nothing (CONTAINER=none, with VENV activated when it exists) or `apptainer exec` of the image.
# TAGSMITH: the CLI, `tagsmith` where installed (always in the image), else `python -m tagsmith.cli`
# from the checkout. TORCHRUN_TARGET: the same for torchrun.
set_runner() {
    RUNNER=()
    TAGSMITH=(tagsmith)
    TORCHRUN_TARGET=(--no-python tagsmith)
    if [[ $CONTAINER == none ]]; then
        if [[ -f $VENV/bin/activate ]]; then
            # shellcheck disable=SC1091
            source "$VENV/bin/activate"
        fi
        if ! command -v tagsmith >/dev/null; then
            TAGSMITH=(python -m tagsmith.cli)
            TORCHRUN_TARGET=(-m tagsmith.cli)
        fi
        return
    fi
    [[ -f $CONTAINER ]] || { log "container image $CONTAINER not found (run setup-cluster.sh)"; exit 2; }
    RUNNER=("$APPTAINER" exec)
    local dir
    for dir in "$PROJECT_DIR" "$RUNS_DIR" "$MODELS_DIR" "$TAGSMITH_CACHE" $BIND_DIRS; do
        mkdir -p "$dir"
        RUNNER+=(--bind "$dir")
    done
    if [[ -n ${SLURM_GPUS_ON_NODE:-} || ${GPUS_PER_NODE:-0} -gt 0 ]]; then RUNNER+=(--nv); fi
    RUNNER+=(--pwd "$PROJECT_DIR" "$CONTAINER")
}

# The run dir of a config: RUNS_DIR/<config file name without .yaml>, fixed so that a requeued job resumes
# the same run.
run_dir_for() {
    local name
    name=$(basename "$1")
    echo "$RUNS_DIR/${name%.*}"
}

# The output folder of a punctuate / segment array: PUNCTUATE_OUT, else RUNS_DIR/<input name>-<task>.
punctuate_out_dir() {
    if [[ -n ${PUNCTUATE_OUT:-} ]]; then echo "$PUNCTUATE_OUT"; return; fi
    local name
    name=$(basename "${PUNCTUATE_INPUT%/}")
    echo "$RUNS_DIR/${name%.*}-$PUNCTUATE_TASK"
}

# SET_ARGS: OVERRIDES="a.b=1 c=2" as --set a.b=1 --set c=2 (values cannot contain spaces).
set_override_args() {
    local kv pairs
    SET_ARGS=()
    read -r -a pairs <<<"$OVERRIDES"
    for kv in "${pairs[@]}"; do SET_ARGS+=(--set "$kv"); done
}

# Signals that arrive while the child runs are passed on to it, once each: USR1 (SLURM's warning before the
# time limit, or `jobs checkpoint`) and TERM (preemption, scancel). A repeat could reach a trainer that is
# already exiting, when Python has restored the default action (terminate).
forward_signal() {
    local signal=$1
    SIGNALS_SEEN=$((SIGNALS_SEEN + 1))
    if [[ " $FORWARDED " == *" $signal "* ]]; then
        log "received SIG$signal again; already passed on"
        return
    fi
    FORWARDED+=" $signal"
    log "received SIG$signal, forwarding it to $CHILD_PID"
    kill -s "$signal" "$CHILD_PID" 2>/dev/null || true
}

# run_resumable DONE_FILE COMMAND...: run COMMAND in the background (so that the batch shell can take
# signals) and wait for it. When it stops because of a signal, or exits 75, before DONE_FILE exists, the job
# is requeued and the next start resumes from the newest checkpoint.
run_resumable() {
    local done_file=$1 status seen
    shift
    SIGNALS_SEEN=0
    FORWARDED=""
    trap 'forward_signal USR1' USR1
    trap 'forward_signal TERM' TERM
    log "running: $*"
    "$@" &
    CHILD_PID=$!
    while :; do
        seen=$SIGNALS_SEEN
        status=0
        wait "$CHILD_PID" || status=$?
        # wait returns >128 when a trapped signal interrupts it; the child is then still running (or its
        # status is still stored), so wait again.
        if ((status > 128 && SIGNALS_SEEN > seen)); then continue; fi
        break
    done
    trap - USR1 TERM
    log "command exited with status $status"
    if ((status == 0)) && [[ -e $done_file ]]; then
        log "done: $done_file"
        return 0
    fi
    if ((status == EXIT_RESUMABLE)) || { ((SIGNALS_SEEN > 0)) && [[ ! -e $done_file ]]; }; then
        requeue_self
    fi
    ((status != 0)) || { log "command succeeded but $done_file is missing"; status=1; }
    return "$status"
}

requeue_self() {
    local restarts=${SLURM_RESTART_COUNT:-0}
    if [[ -z ${SLURM_JOB_ID:-} ]]; then
        log "stopped with a checkpoint; run again to resume"
        exit "$EXIT_RESUMABLE"
    fi
    if ((restarts >= MAX_REQUEUES)); then
        log "stopped with a checkpoint, but the job was already requeued $restarts times (MAX_REQUEUES)"
        exit "$EXIT_RESUMABLE"
    fi
    log "checkpoint saved; requeueing job $SLURM_JOB_ID (restart $((restarts + 1)))"
    scontrol requeue "$SLURM_JOB_ID"
    exit 0
}
