#!/usr/bin/env bash
# Start a single-node SLURM cluster on this machine for the tests (Debian 12 packages):
# munge, slurmctld and slurmd, without accounting (the slurm profile polls with squeue).
# Installs the packages if they are missing (needs root), writes /etc/slurm/slurm.conf, and
# records the PIDs it started in $CFT_SLURM_STATE (default /tmp/cft-slurm) for slurm_down.sh.
set -euo pipefail

STATE=${CFT_SLURM_STATE:-/tmp/cft-slurm}
mkdir -p "$STATE"
if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null
fi

HOST=$(hostname -s)
# The test jobs mostly wait (interpreter start-up, imports, scheduling): the node declares twice
# its cores so that twice as many overlap; config_overrides lets slurmd accept the declaration.
CPUS=$(( $(nproc) * 2 ))
MEM=$(( $(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p') - 1024 ))
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=cft-test
SlurmctldHost=${HOST}(127.0.0.1)
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
SchedulerType=sched/backfill
ReturnToService=2
# Finished jobs stay visible to squeue (the profile's status command) for an hour.
MinJobAge=3600
SlurmctldPidFile=${STATE}/slurmctld.pid
SlurmdPidFile=${STATE}/slurmd.pid
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
SlurmdParameters=config_overrides
NodeName=${HOST} NodeAddr=127.0.0.1 CPUs=${CPUS} RealMemory=${MEM} State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF

# munge: a key, then the daemon as user munge (no systemd here)
if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
fi
chown munge:munge /etc/munge/munge.key /run/munge
chmod 400 /etc/munge/munge.key
runuser -u munge -- /usr/sbin/munged --pid-file="$STATE/munged.pid" 2>/dev/null || \
    runuser -u munge -- /usr/sbin/munged
for _ in $(seq 50); do [ -s "$STATE/munged.pid" ] || [ -S /run/munge/munge.socket.2 ] && break; sleep 0.1; done
pgrep -u munge -n munged > "$STATE/munged.pid"

/usr/sbin/slurmctld -D > "$STATE/slurmctld.out" 2>&1 &
echo $! > "$STATE/slurmctld.pid"
/usr/sbin/slurmd -D > "$STATE/slurmd.out" 2>&1 &
echo $! > "$STATE/slurmd.pid"

for _ in $(seq 100); do
    if sinfo -h -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
        echo "SLURM is up: $(sinfo -h -o '%P %D %t %c CPUs %m MB')"
        exit 0
    fi
    sleep 0.3
done
echo "SLURM did not come up; see $STATE/*.out and /var/log/slurm/" >&2
exit 1
