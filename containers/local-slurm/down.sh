#!/usr/bin/env bash
# Stop the one-node test cluster started by up.sh (slurmd, slurmctld, munged), by the ids in their pid files.
# Leaves packages, config and job state in place; up.sh starts it again.
set -uo pipefail

stop() {
    local name=$1 pidfile=$2 pid
    [[ -f $pidfile ]] || return 0
    pid=$(cat "$pidfile")
    if kill -0 "$pid" 2>/dev/null; then
        echo "[local-slurm] stopping $name ($pid)" >&2
        kill -TERM "$pid"
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    fi
    rm -f "$pidfile"
}

stop slurmd /run/slurmd.pid
stop slurmctld /run/slurmctld.pid
stop munged /run/munge/munged.pid
