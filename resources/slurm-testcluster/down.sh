#!/usr/bin/env bash
# Tear down the test cluster started by up.sh: cancel its jobs, stop slurmd,
# slurmctld and munged by the pids up.sh recorded. Config, job state and logs
# stay in place so up.sh can start the same cluster again. Safe to run twice.
set -euo pipefail

TC_DIR=${SLURM_TC_DIR:-/var/lib/elasticity-slurm}
TC_STOP_TIMEOUT=${SLURM_TC_STOP_TIMEOUT:-30}
RUN_DIR=$TC_DIR/run
export SLURM_CONF=/etc/slurm/slurm.conf

die() { echo "down.sh: error: $*" >&2; exit 1; }
say() { echo "down.sh: $*"; }

[[ $(id -u) -eq 0 ]] || die "must run as root"

pid_alive() {
    local pid
    [[ -s $1 ]] || return 1
    pid=$(<"$1")
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null &&
        [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$2" ]]
}

# stop NAME: SIGTERM the recorded pid (only if it still is NAME: pids get
# reused), wait for it to exit, SIGKILL as a last resort.
stop() {
    local name=$1 pidfile=$RUN_DIR/$1.pid pid
    if ! pid_alive "$pidfile" "$name"; then
        say "$name not running"
        rm -f "$pidfile"
        return 0
    fi
    pid=$(<"$pidfile")
    kill -TERM "$pid" 2>/dev/null || true
    for ((t = 0; t < TC_STOP_TIMEOUT * 5; t++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
    done
    if kill -0 "$pid" 2>/dev/null; then
        say "$name (pid $pid) ignored SIGTERM for ${TC_STOP_TIMEOUT}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
    fi
    rm -f "$pidfile"
    say "$name stopped (pid $pid)"
}

# Running jobs would otherwise outlive slurmd as orphaned slurmstepd
# processes; only do this while our slurmctld is there to ask.
if pid_alive "$RUN_DIR/slurmctld.pid" slurmctld; then
    jobs=$(squeue -h -t PENDING,RUNNING,SUSPENDED,CONFIGURING,COMPLETING -o %A 2>/dev/null || true)
    if [[ -n $jobs ]]; then
        say "cancelling jobs: ${jobs//$'\n'/ }"
        # shellcheck disable=SC2086  # word splitting wanted: one id per arg
        scancel $jobs 2>/dev/null || true
        for _ in $(seq 50); do
            [[ -z $(squeue -h -t RUNNING,COMPLETING -o %A 2>/dev/null) ]] && break
            sleep 0.2
        done
    fi
fi

stop slurmd
stop slurmctld
# up.sh records munged's pid only when it started munged itself; a munged the
# system already ran is left alone.
stop munged
say "test cluster down (config in /etc/slurm, state and logs in $TC_DIR kept)"
