#!/usr/bin/env bash
# Stop exactly the SLURM and munge processes that slurm_up.sh started (by their recorded PIDs).
set -uo pipefail

STATE=${CFT_SLURM_STATE:-/tmp/cft-slurm}
for name in slurmd slurmctld munged; do
    pidfile="$STATE/$name.pid"
    [ -s "$pidfile" ] || continue
    pid=$(cat "$pidfile")
    if kill "$pid" 2>/dev/null; then
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$pidfile"
done
echo "SLURM stopped"
