#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for the tests that submit through a real scheduler
# (tests/launch/test_slurm.py): Debian's slurmctld, slurmd and munge, one partition `debug` holding
# every core. Run as root; safe to run again (it restarts the daemons with the same config).
set -euo pipefail

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
pkill -x slurmd || true
pkill -x slurmctld || true
pkill -x munged || true
sleep 1
runuser -u munge -- /usr/sbin/munged --force
/usr/sbin/slurmctld
/usr/sbin/slurmd

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
