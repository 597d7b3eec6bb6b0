#!/usr/bin/env bash
# Stand up a one-node SLURM cluster (munge + slurmctld + slurmd) on this host, for tests.
#
# Runs as root on Debian/Ubuntu without systemd: installs slurm-wlm and munge when missing, writes a
# minimal slurm.conf for this host (no cgroups, no accounting), starts the daemons with setsid and waits
# until the node is idle. A second call while the cluster is up does nothing.
#
#   containers/local-slurm/up.sh          # then: sbatch -W --wrap hostname
#   containers/local-slurm/down.sh        # stop the daemons
#
# Settings (environment): LOCAL_SLURM_CPUS (default 2, at most the host's), LOCAL_SLURM_PARTITION (debug),
# LOCAL_SLURM_TIMEOUT (seconds to wait for the node, 60).
set -euo pipefail

CPUS=${LOCAL_SLURM_CPUS:-2}
PARTITION=${LOCAL_SLURM_PARTITION:-debug}
TIMEOUT=${LOCAL_SLURM_TIMEOUT:-60}
CONF=/etc/slurm/slurm.conf
LOG_DIR=/var/log/slurm
SPOOL_CTLD=/var/spool/slurmctld
SPOOL_D=/var/spool/slurmd

log() { echo "[local-slurm] $*" >&2; }
die() { log "error: $*"; exit 1; }

node_state() { sinfo -h -N -o %T 2>/dev/null | head -n 1; }

cluster_is_up() {
    command -v sinfo >/dev/null && [[ -f $CONF ]] && scontrol ping >/dev/null 2>&1 \
        && [[ $(node_state) =~ ^(idle|mixed|allocated|completing) ]]
}

install_packages() {
    command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v sbatch >/dev/null \
        && command -v munged >/dev/null && return
    command -v apt-get >/dev/null || die "slurm is not installed and apt-get is not available"
    log "installing slurm-wlm and munge"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # Package scripts may try to start the services; without an init system that fails harmlessly.
    apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
}

ensure_hostname_resolves() {
    local host=$1
    getent hosts "$host" >/dev/null || { log "adding $host to /etc/hosts"; echo "127.0.0.1 $host" >>/etc/hosts; }
}

real_memory_mb() {
    # slurmd's own view of the node, so the config never claims more than slurmd detects.
    slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p'
}

write_slurm_conf() {
    local host=$1 cpus=$2 memory=$3
    mkdir -p /etc/slurm "$LOG_DIR" "$SPOOL_CTLD" "$SPOOL_D"
    cat >"$CONF" <<EOF
# Written by containers/local-slurm/up.sh: a one-node test cluster, no cgroups, no accounting.
ClusterName=tagsmith-local
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobRequeue=1
ReturnToService=2
# Keep finished jobs visible to 'scontrol show job' for a while (there is no accounting database).
MinJobAge=600
KillWait=30
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=$SPOOL_CTLD
SlurmdSpoolDir=$SPOOL_D
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
NodeName=$host CPUs=$cpus RealMemory=$memory State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
}

pid_alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_munge() {
    mkdir -p /run/munge /var/lib/munge /var/log/munge /etc/munge
    chown munge:munge /run/munge /var/lib/munge /var/log/munge /etc/munge
    chmod 0755 /run/munge
    if [[ ! -s /etc/munge/munge.key ]]; then
        log "creating munge key"
        mungekey --create --keyfile=/etc/munge/munge.key
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
    if pid_alive /run/munge/munged.pid; then return; fi
    log "starting munged"
    setsid runuser -u munge -- /usr/sbin/munged --force </dev/null >>"$LOG_DIR/munged.out" 2>&1
    for _ in $(seq 50); do munge -n </dev/null | unmunge >/dev/null 2>&1 && return; sleep 0.2; done
    die "munged did not start (see /var/log/munge/munged.log)"
}

start_daemon() {
    local name=$1 pidfile=$2
    if pid_alive "$pidfile"; then return; fi
    log "starting $name"
    # -D keeps it in the foreground; setsid -f detaches it from this shell's session and process group.
    setsid -f "/usr/sbin/$name" -D </dev/null >>"$LOG_DIR/$name.out" 2>&1
}

wait_for_node() {
    local host=$1 deadline=$((SECONDS + TIMEOUT)) state
    until scontrol ping >/dev/null 2>&1; do
        ((SECONDS < deadline)) || die "slurmctld does not answer (see $LOG_DIR/slurmctld.log)"
        sleep 0.5
    done
    while :; do
        state=$(node_state)
        case $state in
            idle* | mixed* | allocated*) log "node $host is $state"; return ;;
            down* | drain*) scontrol update NodeName="$host" State=RESUME >/dev/null 2>&1 || true ;;
        esac
        ((SECONDS < deadline)) || die "node $host is '$state', not idle (see $LOG_DIR/slurmd.log)"
        sleep 0.5
    done
}

main() {
    [[ $(id -u) -eq 0 ]] || die "must run as root"
    if cluster_is_up; then log "cluster is already up ($(node_state))"; return; fi
    install_packages
    local host cpus memory
    host=$(hostname -s)
    ensure_hostname_resolves "$host"
    cpus=$(nproc)
    ((cpus < CPUS)) || cpus=$CPUS
    memory=$(real_memory_mb)
    mkdir -p "$LOG_DIR"
    write_slurm_conf "$host" "$cpus" "$memory"
    start_munge
    start_daemon slurmctld /run/slurmctld.pid
    start_daemon slurmd /run/slurmd.pid
    wait_for_node "$host"
}

main "$@"
