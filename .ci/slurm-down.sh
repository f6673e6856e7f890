#!/usr/bin/env bash
# .ci/slurm-down.sh - stop the test cluster of .ci/slurm-up.sh (docs/slurm.md).
#
#   bash .ci/slurm-down.sh           cancel every job left, stop the daemons; keep config, DB, job state
#   bash .ci/slurm-down.sh --purge   also remove what slurm-up created (configs, munge key, spool dirs
#                                    with the MariaDB datadir, logs); the packages stay installed
#
# Each daemon is stopped by the pid in its own pid file (never by name), in reverse start order.
# Safe to run when nothing is up (CI's trap runs it whatever happened). Prints how long it took.
set -uo pipefail

T_START=$(date +%s.%N)
elapsed() { awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $T_START}"; }
log() { printf '[slurm-down %5ss] %s\n' "$(elapsed)" "$*"; }

PURGE=0; [ "${1:-}" = --purge ] && PURGE=1
[ "$(id -u)" = 0 ] || { echo "must run as root" >&2; exit 1; }
CTLD_PID=/var/spool/slurmctld/slurmctld.pid

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
stop_pidfile() { # stop_pidfile NAME FILE
  local name=$1 f=$2 p
  [ -s "$f" ] || return 0
  p=$(cat "$f")
  if ! kill -0 "$p" 2>/dev/null; then rm -f "$f"; return 0; fi
  kill "$p"
  for _ in $(seq 1 200); do kill -0 "$p" 2>/dev/null || { log "$name stopped (pid $p)"; return 0; }; sleep 0.1; done
  log "$name (pid $p) ignored SIGTERM for 20 s: SIGKILL"; kill -9 "$p" 2>/dev/null || true
}

# cancel what is left (a test that failed half-way, a killed Snakemake) and wait for it to go, so that
# slurmd leaves no job processes behind
if alive "$CTLD_PID" && command -v squeue >/dev/null 2>&1; then
  jobs=$(squeue -h -o %i 2>/dev/null | tr '\n' ' ')
  if [ -n "${jobs// }" ]; then
    log "cancelling jobs: $jobs"
    squeue -h -o '%i %j %T %k' 2>/dev/null | sed 's/^/  /'
    scancel $jobs 2>/dev/null
    for _ in $(seq 1 150); do [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break; sleep 0.2; done
    left=$(squeue -h -o '%i %T' 2>/dev/null | tr '\n' ';')
    [ -z "$left" ] || log "still in the queue after 30 s: $left"
  fi
fi

stop_pidfile slurmd    /var/spool/slurmd/slurmd.pid
stop_pidfile slurmctld "$CTLD_PID"
stop_pidfile slurmdbd  /var/spool/slurmdbd/slurmdbd.pid
stop_pidfile mariadbd  /var/spool/slurm-db/mariadbd.pid
stop_pidfile munged    /run/munge/munged.pid

if [ $PURGE = 1 ]; then
  rm -rf /etc/slurm/slurm.conf /etc/slurm/gres.conf /etc/slurm/slurmdbd.conf /etc/slurm/fake-gpus \
         /var/spool/slurmctld /var/spool/slurmd /var/spool/slurmdbd /var/spool/slurm-db \
         /var/log/slurm/*.log /etc/munge/munge.key
  log "purged configs, munge key, spool dirs and logs (packages left installed)"
fi
log "slurm-down done in $(elapsed) s"
