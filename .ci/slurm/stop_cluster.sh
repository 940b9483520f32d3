#!/usr/bin/env bash
# Stops the Slurm and munge daemons that .ci/slurm/start_cluster.sh started (their PIDs are in
# /run/hydratune-ci-slurm.pids) and nothing else: a cluster that was running before is left alone.
set -uo pipefail
STARTED=/run/hydratune-ci-slurm.pids
[ -f "$STARTED" ] || exit 0
pids=()
while read -r pid; do
  # Only a daemon of ours: the PID may have been reused since.
  case "$(cat "/proc/$pid/comm" 2>/dev/null)" in
    munged | slurmctld | slurmd) pids+=("$pid") ;;
  esac
done <"$STARTED"
if [ ${#pids[@]} -gt 0 ]; then
  kill "${pids[@]}" 2>/dev/null
  for _ in $(seq 20); do
    alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && break
    sleep 0.5
  done
  kill -9 "${pids[@]}" 2>/dev/null
  echo "slurm: stopped the daemons this CI run started (${pids[*]})"
fi
rm -f "$STARTED"
