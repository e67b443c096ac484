#!/usr/bin/env bash
# CI scenario: a real single-node SLURM on this machine, the tiny demo through
# `--profile profiles/slurm`, and the scheduler faults (tests/workflow/test_slurm.py).
#
# Run as root on a Debian 12 machine (CI): installs slurmctld slurmd slurm-client munge when
# missing, writes /etc/slurm/{slurm.conf,gres.conf} for this host (one GPU as gres with
# File=/dev/null: a gres without File= drains the node), starts munged, slurmctld and slurmd
# in the foreground as background children, waits for the node to be idle, runs the tests, and
# on exit (success, failure or signal) cancels the jobs of its own controller and stops exactly
# the daemons it started, by PID. Bounded: each step has a timeout, the whole run SCENARIO_TIMEOUT.
#
#     bash .ci/slurm_scenario.sh              # the scenario (as in CI)
#     KEEP_SLURM=1 bash .ci/slurm_scenario.sh # leave the daemons running (development only)
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
SCENARIO_TIMEOUT=${SCENARIO_TIMEOUT:-900}
STATE=/var/lib/affectflow-slurm          # spool, state and logs of this scenario's cluster
PIDS=()
TEST_PID=

log() { echo "[slurm-scenario $(date -u +%T)] $*"; }

if [ "$(id -u)" != 0 ]; then
    echo "slurm_scenario.sh must run as root (it installs packages and starts daemons)" >&2
    exit 2
fi

# 1. Packages (idempotent).
missing=()
for pkg in slurmctld slurmd slurm-client munge; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    timeout 600 apt-get update -qq
    DEBIAN_FRONTEND=noninteractive timeout 900 apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# A package's postinst may have started daemons where a service manager exists: this scenario
# needs the ports and the node to itself, and will not touch processes it did not start.
for daemon in slurmctld slurmd; do
    if pgrep -x "$daemon" >/dev/null; then
        echo "a $daemon not started by this scenario is running (pid $(pgrep -x "$daemon" | tr '\n' ' ')); stop it first" >&2
        exit 2
    fi
done

# 2. Configuration for this host. The executor plugin strips SLURM_* variables (SLURM_CONF
# included) inside jobs, so the configuration must live at the default path /etc/slurm.
HOST=$(hostname -s)
MEM_MB=$(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo)
REAL_MB=$((MEM_MB > 2048 ? MEM_MB - 1024 : MEM_MB))
rm -rf "$STATE"
mkdir -p "$STATE"/{ctld,slurmd,log} /etc/slurm /run/munge /var/log/munge /var/lib/munge
for f in slurm.conf gres.conf; do
    if [ -f /etc/slurm/$f ] && ! grep -q "written by affectflow" /etc/slurm/$f; then
        cp -p /etc/slurm/$f /etc/slurm/$f.before-affectflow
    fi
done
cat > /etc/slurm/slurm.conf <<EOF
# written by affectflow .ci/slurm_scenario.sh: a single-node test cluster
ClusterName=affectflow
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/slurmd
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
ReturnToService=2
# squeue is the status command (no accounting): finished jobs must stay visible to it for
# well over 3x the plugin's initial wait before the first status check.
MinJobAge=600
KillWait=5
MessageTimeout=20
NodeName=$HOST CPUs=$(nproc) RealMemory=$REAL_MB Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
cat > /etc/slurm/gres.conf <<EOF
# written by affectflow .ci/slurm_scenario.sh: one fake GPU (File= is required, else the node drains)
NodeName=$HOST Name=gpu File=/dev/null
EOF

# 3. Daemons, each in the foreground as a child of this shell: $! is its PID.
stop_daemons() {
    local rc=$?
    set +e
    if [ "${KEEP_SLURM:-0}" = 1 ] && [ $rc = 0 ]; then
        log "KEEP_SLURM=1: leaving pids ${PIDS[*]} running"
        return
    fi
    if [ -n "${TEST_PID:-}" ] && kill -0 -- "-$TEST_PID" 2>/dev/null; then
        kill -TERM -- "-$TEST_PID"   # the tests' process group (Snakemake cancels its jobs)
        for _ in $(seq 150); do kill -0 -- "-$TEST_PID" 2>/dev/null || break; sleep 0.2; done
        kill -KILL -- "-$TEST_PID" 2>/dev/null
    fi
    if [ ${#PIDS[@]} -gt 0 ]; then
        # Every job on this controller is this scenario's: cancel them before the daemons go.
        timeout 20 squeue -h -o %i 2>/dev/null | xargs -r timeout 20 scancel 2>/dev/null
        sleep 2
        for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do   # slurmd, slurmctld, then munged
            kill -TERM "${PIDS[$i]}" 2>/dev/null
        done
        for _ in $(seq 50); do
            alive=0
            for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
            [ $alive = 0 ] && break
            sleep 0.2
        done
        for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"; done
        log "stopped pids ${PIDS[*]}"
    fi
    # Take our configuration away again (restoring any that was there before): with a
    # slurm.conf but no controller, every `scontrol` -- and so every Snakemake start, whose
    # SLURM plugin asks scontrol for MinJobAge at import -- waits ~10-20 s for a timeout.
    for f in slurm.conf gres.conf; do
        if grep -qs "written by affectflow" /etc/slurm/$f; then
            rm -f /etc/slurm/$f
            [ -f /etc/slurm/$f.before-affectflow ] && mv /etc/slurm/$f.before-affectflow /etc/slurm/$f
        fi
    done
    if [ $rc != 0 ]; then
        log "FAILED (exit $rc); last lines of the daemons' logs:"
        tail -n 30 "$STATE"/log/*.log 2>/dev/null
    fi
    exit $rc
}
trap stop_daemons EXIT
trap 'exit 130' INT TERM

chown munge:munge /run/munge /var/log/munge /var/lib/munge 2>/dev/null || true
/usr/sbin/munged --foreground --force --socket=/run/munge/munge.socket.2 \
    --pid-file="$STATE/munged.pid" --log-file="$STATE/log/munged.log" >>"$STATE/log/munged.out" 2>&1 &
PIDS+=($!)
timeout 20 bash -c 'until munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; do sleep 0.2; done'
/usr/sbin/slurmctld -D -c -i >>"$STATE/log/slurmctld.out" 2>&1 &
PIDS+=($!)
timeout 30 bash -c 'until scontrol ping 2>/dev/null | grep -q UP; do sleep 0.5; done'
/usr/sbin/slurmd -D >>"$STATE/log/slurmd.out" 2>&1 &
PIDS+=($!)
log "started munged, slurmctld, slurmd: pids ${PIDS[*]}"
if ! timeout 60 bash -c "until sinfo -h -n $HOST -o %t | grep -qx idle; do sleep 0.5; done"; then
    sinfo -N -l; scontrol show node "$HOST"
    echo "node $HOST never became idle" >&2
    exit 1
fi
sinfo -N -o "%N %t %c %m %G"

# 4. The scenario proper: tests/conftest.py collects test_slurm.py only with AFFECTFLOW_SLURM=1.
log "running tests/workflow/test_slurm.py (limit ${SCENARIO_TIMEOUT}s)"
# In a process group of its own (setsid), in the background and waited for, so that a signal
# to this script is handled at once: the trap then stops that whole group (pytest, the
# Snakemake it started) before the daemons.
AFFECTFLOW_SLURM=1 setsid timeout --kill-after=30 "$SCENARIO_TIMEOUT" \
    "$PYTHON" -m pytest -q -p no:cacheprovider tests/workflow/test_slurm.py "$@" &
TEST_PID=$!
wait "$TEST_PID"
TEST_PID=
log "scenario passed"
