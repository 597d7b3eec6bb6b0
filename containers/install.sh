#!/usr/bin/env bash
# Install tagsmith and the dependencies of some extras into an existing Python environment, keeping the torch that
# is already there. The one install path of the training image (apptainer.def %post), the serving image
# (containers/serve.def) and CI.
#
#   containers/install.sh                                                  # python3 on PATH, extras train,export
#   TAGSMITH_PYTHON=.venv/bin/python TAGSMITH_EXTRAS=dev TAGSMITH_EDITABLE=1 containers/install.sh    # CI
#   TAGSMITH_EXTRAS=serve containers/install.sh                            # serving: must stay torch-free
#   TAGSMITH_TORCH=torch==2.13.0 containers/install.sh                     # train.sif: torch first, then the rest
#
# Settings (environment):
#   TAGSMITH_PYTHON    the interpreter whose environment receives the install (default: python3)
#   TAGSMITH_EXTRAS    comma-separated extras of pyproject.toml (default: train,export)
#   TAGSMITH_EDITABLE  1: editable install of the checkout (development, CI); default 0
#   TAGSMITH_SRC       the project folder (default: the folder above this script)
#   TAGSMITH_TORCH     a torch requirement (torch==2.13.0) installed first when the environment has no torch;
#                      on Linux x86_64 the package index serves the CUDA build of that release (train.sif), a CPU
#                      machine may point pip at a CPU build (PIP_INDEX_URL / PIP_FIND_LINKS)
# Extra pip options (an index, a proxy, --no-cache-dir) come from pip's own PIP_* variables.
set -euo pipefail

PYTHON=${TAGSMITH_PYTHON:-python3}
EXTRAS=${TAGSMITH_EXTRAS:-train,export}
EDITABLE=${TAGSMITH_EDITABLE:-0}
SRC=${TAGSMITH_SRC:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}

log() { echo "[install] $*" >&2; }
die() { log "error: $*"; exit 1; }

# The version pip sees for torch, or nothing when torch is not installed.
torch_version() {
    "$PYTHON" - <<'EOF'
from importlib import metadata
try:
    print(metadata.version("torch"))
except metadata.PackageNotFoundError:
    pass
EOF
}

needs_torch() { [[ ,$EXTRAS, =~ ,(train|export|dev), ]]; }

main() {
    command -v "$PYTHON" >/dev/null || die "no Python at '$PYTHON' (set TAGSMITH_PYTHON)"
    [[ -f $SRC/pyproject.toml ]] || die "$SRC has no pyproject.toml (set TAGSMITH_SRC)"
    local before args=(install)
    before=$(torch_version)
    if needs_torch && [[ -z $before && -n ${TAGSMITH_TORCH:-} ]]; then
        # torch alone and first: the project's range is then satisfied and pip never picks another build
        log "$PYTHON -m pip install $TAGSMITH_TORCH"
        "$PYTHON" -m pip install "$TAGSMITH_TORCH"
        before=$(torch_version)
    fi
    CONSTRAINTS=$(mktemp)
    trap 'rm -f "$CONSTRAINTS"' EXIT
    if needs_torch; then
        # pyproject.toml accepts a range of torch versions; pinning the installed one means pip never swaps the
        # image's CUDA build (or CI's CPU build) for another download.
        [[ -n $before ]] || die "extras '$EXTRAS' need torch: install the torch build for this machine first (or set TAGSMITH_TORCH)"
        echo "torch==$before" >"$CONSTRAINTS"
        log "keeping torch $before"
    fi
    args+=(--constraint "$CONSTRAINTS")
    if [[ $EDITABLE == 1 ]]; then args+=(--editable "${SRC}[${EXTRAS}]"); else args+=("${SRC}[${EXTRAS}]"); fi
    log "$PYTHON -m pip ${args[*]}"
    "$PYTHON" -m pip "${args[@]}"

    local after
    after=$(torch_version)
    if needs_torch; then
        [[ $after == "$before" ]] || die "torch changed from $before to $after"
        "$PYTHON" -c 'import torch, transformers, tagsmith.cli, training, export; print("torch", torch.__version__, "transformers", transformers.__version__)'
    elif [[ -z $before && -n $after ]]; then
        die "extras '$EXTRAS' pulled in torch $after; the serving stack must stay torch-free"
    else
        "$PYTHON" -c 'import tagsmith.cli, serving'
    fi
    log "installed tagsmith[$EXTRAS] from $SRC"
}

main "$@"
