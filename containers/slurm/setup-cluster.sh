#!/usr/bin/env bash
# Prepare a SLURM cluster for tagsmith, once, on a login node from the project root:
# make the run/log/model/cache dirs, get train.sif (build it from apptainer.def or pull it), check it, and
# optionally fill the Hugging Face cache for compute nodes without internet.
#
#   containers/slurm/setup-cluster.sh                        # dirs + train.sif (IMAGE_SOURCE in config.env)
#   containers/slurm/setup-cluster.sh --serve                # also serve.sif from containers/serve.def
#   containers/slurm/setup-cluster.sh --download bert-base-chinese SIKU-BERT/sikubert
#   containers/slurm/setup-cluster.sh --no-image             # CONTAINER=none: dirs and a check of VENV only
set -euo pipefail

SLURM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export PROJECT_DIR=${PROJECT_DIR:-$(cd "$SLURM_DIR/../.." && pwd)}
# shellcheck source=config.env
source "$SLURM_DIR/config.env"

log() { echo "[setup-cluster] $*" >&2; }
die() { log "error: $*"; exit 1; }

want_image=1
want_serve=0
downloads=()
while (($#)); do
    case $1 in
        --no-image) want_image=0 ;;
        --serve) want_serve=1 ;;
        --download) shift; while (($#)) && [[ $1 != --* ]]; do downloads+=("$1"); shift; done; continue ;;
        -h | --help) sed -n '2,10p' "$0"; exit 0 ;;
        *) die "unknown option $1" ;;
    esac
    shift
done

# Unprivileged users build with --fakeroot (an admin must have enabled it for them).
BUILD_FLAGS=()
if [[ $(id -u) -ne 0 ]]; then BUILD_FLAGS=(--fakeroot); fi

get_image() {
    command -v "$APPTAINER" >/dev/null || die "$APPTAINER not found (module load apptainer?)"
    if [[ -f $IMAGE_PATH ]]; then
        log "$IMAGE_PATH exists; delete it to rebuild"
    elif [[ $IMAGE_SOURCE == build ]]; then
        log "building $IMAGE_PATH from apptainer.def (about 15 minutes, several GB in APPTAINER_CACHEDIR)"
        # %files paths in the recipe are relative to the project root.
        (cd "$PROJECT_DIR" && "$APPTAINER" build "${BUILD_FLAGS[@]}" "$IMAGE_PATH" apptainer.def)
    else
        log "pulling $IMAGE_SOURCE to $IMAGE_PATH"
        "$APPTAINER" pull "$IMAGE_PATH" "$IMAGE_SOURCE"
    fi
    "$APPTAINER" test "$IMAGE_PATH"
    log "image ready: set CONTAINER=$IMAGE_PATH in containers/slurm/config.env"
}

get_serve_image() {
    local serve_image=${IMAGE_PATH%/*}/serve.sif
    [[ -f $serve_image ]] || (cd "$PROJECT_DIR" && "$APPTAINER" build "${BUILD_FLAGS[@]}" "$serve_image" containers/serve.def)
    "$APPTAINER" test "$serve_image"
}

check_venv() {
    [[ -x $VENV/bin/python ]] || die "no Python environment at VENV=$VENV; create it, install torch for this cluster, then run TAGSMITH_PYTHON=$VENV/bin/python containers/install.sh"
    "$VENV/bin/python" -c 'import torch, tagsmith.cli; print("torch", torch.__version__)'
}

download_models() {
    # Runs where the cluster reaches the hub (a login node); jobs then read the cache with HF_HUB_OFFLINE=1.
    local runner=() image=$CONTAINER
    if [[ $image == none ]] && ((want_image)); then image=$IMAGE_PATH; fi
    if [[ $image != none ]]; then runner=("$APPTAINER" exec --bind "$TAGSMITH_CACHE" "$image");
    elif [[ -x $VENV/bin/python ]]; then PATH=$VENV/bin:$PATH; fi
    local model
    for model in "${downloads[@]}"; do
        log "downloading $model into $HF_HOME"
        HF_HUB_OFFLINE=0 "${runner[@]}" python -c 'import sys; from huggingface_hub import snapshot_download; print(snapshot_download(sys.argv[1]))' "$model"
    done
}

mkdir -p "$RUNS_DIR" "$MODELS_DIR" "$LOG_DIR" "$TAGSMITH_CACHE"
export HF_HOME=${HF_HOME:-$TAGSMITH_CACHE/huggingface} TAGSMITH_CACHE
log "dirs: runs $RUNS_DIR, logs $LOG_DIR, models $MODELS_DIR, cache $TAGSMITH_CACHE"
if ((want_image)); then get_image; else check_venv; fi
((want_serve == 0)) || get_serve_image
((${#downloads[@]} == 0)) || download_models
log "next: edit containers/slurm/config.env, then containers/slurm/jobs submit train"
