#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for the tests that submit through a real scheduler
# (tests/training/test_slurm.py): Debian's slurmctld, slurmd and munge, one partition `debug` holding
# every core. Run as root. It starts only the daemons that are not running and writes their PIDs to
# $STARTED, which .ci/slurm/stop_cluster.sh reads: a cluster that was already running is left as it
# was, and so is a slurm.conf that this script did not write.
set -euo pipefail
STARTED=/run/hydratune-ci-slurm.pids

# Daemons left by an earlier run of this script that did not stop them (a killed CI) are ours to restart.
bash "$(dirname "$0")/stop_cluster.sh"

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null
fi

node="$(hostname -s)"
cpus="$(nproc)"
# Slurm schedules memory against RealMemory; leave 2 GB to the system.
memory_mb="$(($(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) - 2048))"

mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge
if [ -e /etc/slurm/slurm.conf ] && ! grep -qx 'ClusterName=hydratune-ci' /etc/slurm/slurm.conf; then
  if pgrep -x slurmctld >/dev/null && pgrep -x slurmd >/dev/null; then
    echo "slurm: a cluster this script did not set up is running; the tests use it as it is"
    exit 0
  fi
  echo "slurm: /etc/slurm/slurm.conf was not written by hydratune and its daemons are not running;" \
    "start that cluster, or move the file aside, then run this again" >&2
  exit 1
fi
cat >/etc/slurm/slurm.conf <<EOF
ClusterName=hydratune-ci
SlurmctldHost=${node}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
# No cgroups in a container: processes are tracked and bound without them.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# No accounting database: sacct answers that accounting is disabled (submitit then reads
# job states from squeue and says so once per poll).
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
NodeName=${node} CPUs=${cpus} RealMemory=${memory_mb} State=UNKNOWN
PartitionName=debug Nodes=${node} Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO
EOF

# munge signs the daemons' messages; its key is made by the package on install.
chown -R munge:munge /etc/munge /run/munge /var/lib/munge /var/log/munge 2>/dev/null || true
: >"$STARTED"
start() {  # name, command...: start a daemon unless one runs already, and record the one started
  local name="$1"
  shift
  if pgrep -x "$name" >/dev/null; then
    echo "slurm: $name already running: left alone"
    return
  fi
  "$@"
  sleep 0.5
  pgrep -nx "$name" >>"$STARTED"
}
start munged runuser -u munge -- /usr/sbin/munged --force
start slurmctld /usr/sbin/slurmctld
start slurmd /usr/sbin/slurmd

for _ in $(seq 60); do
  if sinfo --noheader --states=idle,mixed,allocated --format=%n 2>/dev/null | grep -qx "${node}"; then
    echo "slurm: node ${node} up in partition debug (${cpus} CPUs, ${memory_mb} MB)"
    exit 0
  fi
  scontrol update nodename="${node}" state=resume >/dev/null 2>&1 || true
  sleep 1
done
echo "slurm: node ${node} did not come up; the daemons' logs:" >&2
tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2
exit 1
