#!/usr/bin/env bash
# .ci/slurm-up.sh - install and start a real single-node Slurm test cluster on this machine, the one
# profiles/slurm-local is written for (docs/slurm.md).
#
#   cluster `synergyci`, node $(hostname -s) at 127.0.0.1 with every CPU, the detected memory less 1 GB
#   and 2 fake GPUs of type `fake` (gres.conf File= symlinks to /dev/null: schedulable, no CUDA);
#   partitions `cpu` (default) and `gpu`, both on that node; accounting through slurmdbd and a private
#   MariaDB (127.0.0.1:3307) so `sacct` works (the Snakemake plugin's status command) and records
#   gres/gpu in AllocTRES and each job's comment (the plugin puts the rule name there); account `ci`
#   with user root (and $SLURM_CI_USERS).
#
# Debian 12 packages (munge, slurm-wlm 22.05, slurmdbd, mariadb-server) are apt-get installed when
# missing. Daemons are started directly (no systemd), pid files in their spool dirs. Must run as root.
# Idempotent: a second run while the cluster is up checks it and changes nothing (a changed config
# restarts the daemons). Ends with an sbatch smoke job on the gpu partition, checked in sacct.
# On any error it prints the daemons' logs and exits non-zero. Companion: .ci/slurm-down.sh.
#
# Knobs: SLURM_CI_USERS="" (extra unix users for account ci), SLURM_CI_SMOKE=1 (0: skip the smoke job).
# Files touched: apt packages, /etc/munge/munge.key, /etc/slurm/{slurm,gres,slurmdbd}.conf,
#   /etc/slurm/fake-gpus, /run/munge, /var/spool/slurm{ctld,d,dbd,-db}, /var/log/slurm.
set -Eeuo pipefail

T_START=$(date +%s.%N)
elapsed() { awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $T_START}"; }
log() { printf '[slurm-up %6ss] %s\n' "$(elapsed)" "$*"; }

CLUSTER=synergyci
ACCOUNT=ci
FAKE_GPUS=2
EXTRA_USERS=${SLURM_CI_USERS:-}
SMOKE=${SLURM_CI_SMOKE:-1}

ETC=/etc/slurm
CTLD_SPOOL=/var/spool/slurmctld
SLURMD_SPOOL=/var/spool/slurmd
DBD_SPOOL=/var/spool/slurmdbd
DB_DIR=/var/spool/slurm-db           # private MariaDB instance (datadir, socket, pid, error log)
LOGDIR=/var/log/slurm
CTLD_PID=$CTLD_SPOOL/slurmctld.pid
SLURMD_PID=$SLURMD_SPOOL/slurmd.pid
DBD_PID=$DBD_SPOOL/slurmdbd.pid
DB_PID=$DB_DIR/mariadbd.pid
DB_SOCK=$DB_DIR/mysqld.sock
DB_PORT=3307                          # loopback only; 3307 leaves a system MariaDB on 3306 alone
DB_PASS=slurmdb-ci                    # loopback-only throwaway test database
MUNGE_PID=/run/munge/munged.pid

show_logs() { # everything a failed start-up leaves behind, so CI logs say why
  echo "===== slurm-up failed after $(elapsed)s: daemon logs =====" >&2
  for f in "$LOGDIR"/slurmctld.log "$LOGDIR"/slurmd.log "$LOGDIR"/slurmdbd.log "$DB_DIR"/mariadbd.err \
           "$DB_DIR"/install-db.log /var/log/munge/munged.log; do
    [ -s "$f" ] && { echo "----- tail -40 $f -----" >&2; tail -40 "$f" >&2; }
  done
  command -v sinfo >/dev/null 2>&1 && { echo "----- sinfo -R -----" >&2; sinfo -R >&2 2>&1 || true; }
  return 0
}
die() { log "ERROR: $*" >&2; show_logs; exit 1; }
trap 'rc=$?; log "ERROR: command failed (exit $rc) at line $LINENO: $BASH_COMMAND" >&2; show_logs; exit $rc' ERR

[ "$(id -u)" = 0 ] || die "must run as root (CI runs as root; on a workstation: sudo bash .ci/slurm-up.sh)"

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }   # pid file -> running?
wait_for() { # wait_for SECONDS DESCRIPTION CMD...
  local t=$1 what=$2; shift 2; local end=$(( $(date +%s) + t ))
  until "$@" >/dev/null 2>&1; do
    [ "$(date +%s)" -lt "$end" ] || die "timed out after ${t}s waiting for $what"
    sleep 0.2
  done
}
tcp_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
stop_pidfile() { # stop_pidfile FILE: TERM the recorded pid and wait for it to go
  alive "$1" || return 0
  local p; p=$(cat "$1"); kill "$p" 2>/dev/null || true
  for _ in $(seq 1 150); do kill -0 "$p" 2>/dev/null || return 0; sleep 0.1; done
  die "process $p from $1 did not stop"
}
install_if_changed() { # install_if_changed SRC DEST MODE OWNER:GROUP -> 0 if DEST changed
  if [ -f "$2" ] && cmp -s "$1" "$2"; then rm -f "$1"; return 1; fi
  install -m "$3" -o "${4%:*}" -g "${4#*:}" "$1" "$2"; rm -f "$1"; return 0
}

# --- 0. systemd hosts: keep the packages' units from starting with the wrong config ----------------
if [ "$(ps -p 1 -o comm= 2>/dev/null)" = systemd ]; then
  for u in slurmd slurmctld slurmdbd munge mariadb; do systemctl disable --now "$u" >/dev/null 2>&1 || true; done
fi

# --- 1. packages (Debian 12: Slurm 22.05.8, MUNGE 0.5.15, MariaDB 10.11) -----------------------------
PKGS=(munge slurm-wlm slurmctld slurmd slurm-client slurmdbd mariadb-server)
missing=0
for b in munged slurmctld slurmd slurmdbd mariadbd sbatch sacct sacctmgr; do
  command -v "$b" >/dev/null 2>&1 || [ -x "/usr/sbin/$b" ] || missing=1
done
if [ $missing = 1 ]; then
  log "apt-get install ${PKGS[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${PKGS[@]}" >/dev/null
  log "packages installed"
fi
log "versions: $(dpkg-query -W -f='${Package}=${Version} ' slurmctld slurmdbd munge mariadb-server 2>/dev/null)"

HOST=$(hostname -s)
NCPU=$(nproc)
# RealMemory must not exceed what slurmd detects, else the node is drained
MEM_DETECTED=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
MEM=$(( MEM_DETECTED > 2048 ? MEM_DETECTED - 1024 : MEM_DETECTED ))

# --- 2. MUNGE (authenticates every Slurm RPC) --------------------------------------------------------
if [ ! -s /etc/munge/munge.key ]; then log "creating munge key"; mungekey --create --keyfile=/etc/munge/munge.key; fi
chown munge:munge /etc/munge/munge.key; chmod 0400 /etc/munge/munge.key
install -d -o munge -g munge -m 0755 /run/munge
if ! alive "$MUNGE_PID"; then log "starting munged"; runuser -u munge -- /usr/sbin/munged; fi
wait_for 10 munged sh -c 'munge -n | unmunge'

# --- 3. Slurm configuration ---------------------------------------------------------------------------
install -d -o slurm -g slurm -m 0755 "$CTLD_SPOOL" "$LOGDIR"
install -d -o root -g root -m 0755 "$SLURMD_SPOOL"
# a state directory left by a cluster of another name makes slurmctld refuse to start: it is a test
# cluster, so its job state is disposable
if [ -s "$CTLD_SPOOL/clustername" ] && [ "$(cat "$CTLD_SPOOL/clustername")" != "$CLUSTER" ]; then
  alive "$CTLD_PID" && die "slurmctld of cluster $(cat "$CTLD_SPOOL/clustername") is running: stop it first (.ci/slurm-down.sh)"
  log "removing the job state of cluster $(cat "$CTLD_SPOOL/clustername")"
  find "$CTLD_SPOOL" -mindepth 1 -delete
fi
CHANGED=0
# Slurm drops file-less GPUs ("Removing file-less GPU"): each fake GPU gets a device file, a symlink
# to /dev/null (a character device) is accepted
install -d -m 0755 "$ETC/fake-gpus"
for i in $(seq 0 $((FAKE_GPUS - 1))); do ln -sfn /dev/null "$ETC/fake-gpus/nvidia$i"; done
tmp=$(mktemp)
cat > "$tmp" <<EOF
# generated by .ci/slurm-up.sh - fake GPUs, for scheduling tests only (no CUDA behind them)
AutoDetect=off
NodeName=$HOST Name=gpu Type=fake File=$ETC/fake-gpus/nvidia[0-$((FAKE_GPUS - 1))]
EOF
install_if_changed "$tmp" "$ETC/gres.conf" 0644 root:root && CHANGED=1

tmp=$(mktemp)
cat > "$tmp" <<EOF
# generated by .ci/slurm-up.sh - single-node test cluster, loopback only (docs/slurm.md)
ClusterName=$CLUSTER
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=slurm
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
# no cgroups in a sandboxed kernel: processes tracked through /proc (scancel still kills the whole tree)
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
AccountingStorageTRES=gres/gpu
# sacct shows the comment the Snakemake plugin gives each job (rule_<rule>_wildcards_<...>)
AccountingStoreFlags=job_comment
JobCompType=jobcomp/none
# cons_tres: --gpus / --cpus-per-gpu; CR_Core_Memory: jobs share the node by cores and memory
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# without a default a job that names no memory gets the whole node's (and jobs run one at a time)
DefMemPerCPU=1000
ReturnToService=2
# scancel: SIGTERM, then SIGKILL after this many seconds (default 30)
KillWait=5
MinJobAge=3600
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
StateSaveLocation=$CTLD_SPOOL
SlurmdSpoolDir=$SLURMD_SPOOL
SlurmctldLogFile=$LOGDIR/slurmctld.log
SlurmdLogFile=$LOGDIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
GresTypes=gpu
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$NCPU RealMemory=$MEM Gres=gpu:fake:$FAKE_GPUS State=UNKNOWN
PartitionName=cpu Nodes=ALL Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=ALL Default=NO  MaxTime=INFINITE State=UP
EOF
install_if_changed "$tmp" "$ETC/slurm.conf" 0644 root:root && CHANGED=1

# --- 4. accounting: private MariaDB + slurmdbd ----------------------------------------------------------
install -d -o mysql -g mysql -m 0750 "$DB_DIR"
install -d -o slurm -g slurm -m 0755 "$DBD_SPOOL"
if [ ! -d "$DB_DIR/data/mysql" ]; then
  log "initialising MariaDB datadir $DB_DIR/data"
  mariadb-install-db --user=mysql --datadir="$DB_DIR/data" \
    --auth-root-authentication-method=socket --skip-test-db >"$DB_DIR/install-db.log" 2>&1
fi
if ! alive "$DB_PID"; then
  log "starting mariadbd (127.0.0.1:$DB_PORT)"
  # mariadbd does not daemonize: detach it so that the caller's shell can exit
  setsid /usr/sbin/mariadbd --user=mysql --datadir="$DB_DIR/data" --socket="$DB_SOCK" \
    --pid-file="$DB_PID" --port=$DB_PORT --bind-address=127.0.0.1 --skip-name-resolve \
    --innodb-buffer-pool-size=64M --log-error="$DB_DIR/mariadbd.err" </dev/null >/dev/null 2>&1 &
fi
wait_for 60 mariadbd mariadb --socket="$DB_SOCK" -u root -e 'SELECT 1'
mariadb --socket="$DB_SOCK" -u root <<EOF
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY '$DB_PASS';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
EOF
tmp=$(mktemp)
cat > "$tmp" <<EOF
# generated by .ci/slurm-up.sh
AuthType=auth/munge
DbdHost=localhost
DbdPort=6819
SlurmUser=slurm
LogFile=$LOGDIR/slurmdbd.log
PidFile=$DBD_PID
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
EOF
# slurmdbd refuses a slurmdbd.conf that is not 0600 and owned by SlurmUser
DBD_CHANGED=0; install_if_changed "$tmp" "$ETC/slurmdbd.conf" 0600 slurm:slurm && DBD_CHANGED=1
if alive "$DBD_PID" && [ $DBD_CHANGED = 1 ]; then stop_pidfile "$DBD_PID"; fi
if ! alive "$DBD_PID"; then log "starting slurmdbd"; /usr/sbin/slurmdbd; fi
wait_for 60 "slurmdbd on :6819" tcp_open 6819
if ! sacctmgr -n -P list cluster format=cluster 2>/dev/null | grep -qx "$CLUSTER"; then
  sacctmgr -i add cluster "$CLUSTER" >/dev/null
fi

# --- 5. slurmctld + slurmd -------------------------------------------------------------------------------
if [ $CHANGED = 1 ]; then  # a changed config: restart running daemons so that they read it
  stop_pidfile "$SLURMD_PID"; stop_pidfile "$CTLD_PID"
fi
if ! alive "$CTLD_PID"; then log "starting slurmctld"; /usr/sbin/slurmctld; fi
wait_for 30 "slurmctld on :6817" tcp_open 6817
if ! alive "$SLURMD_PID"; then log "starting slurmd"; /usr/sbin/slurmd; fi
node_state() { sinfo -h -N -n "$HOST" -o '%T' 2>/dev/null | head -1; }
node_ready() { case "$(node_state)" in idle|mixed|allocated|completing) return 0;; *) return 1;; esac; }
for _ in $(seq 1 150); do
  node_ready && break
  case "$(node_state)" in *drain*|down*|inval*) scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true;; esac
  sleep 0.2
done
node_ready || die "node $HOST not ready (state: $(node_state))"

# --- 6. account ci: the plugin validates slurm_account through sacctmgr ----------------------------------
if ! sacctmgr -n -P list account "$ACCOUNT" format=account 2>/dev/null | grep -qx "$ACCOUNT"; then
  sacctmgr -i add account "$ACCOUNT" Cluster="$CLUSTER" Description=ci Organization=local >/dev/null
fi
for u in root $EXTRA_USERS; do
  if ! sacctmgr -n -P list assoc cluster="$CLUSTER" user="$u" account="$ACCOUNT" format=user 2>/dev/null | grep -qx "$u"; then
    sacctmgr -i add user "$u" Account="$ACCOUNT" DefaultAccount="$ACCOUNT" Cluster="$CLUSTER" >/dev/null
  fi
done

# --- 7. smoke job: a GPU job on the gpu partition, seen by sacct with gres/gpu ----------------------------
if [ "$SMOKE" = 1 ]; then
  out=$(mktemp /tmp/slurm-ci-smoke.XXXXXX)
  jid=$(sbatch --parsable -A "$ACCOUNT" -p gpu --gpus=fake:1 -t 1 --mem=50 -o "$out" -J slurm-up-smoke \
        --wrap 'echo "ok on $(hostname) CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-none}"')
  wait_for 60 "smoke job $jid" sh -c "scontrol show job -o $jid | grep -qE 'JobState=(COMPLETED|FAILED|CANCELLED|TIMEOUT|NODE_FAIL|OUT_OF_MEMORY)'"
  scontrol show job -o "$jid" | grep -q 'JobState=COMPLETED' || die "smoke job $jid failed: $(scontrol show job -o "$jid")"
  log "smoke job $jid: $(cat "$out")"; rm -f "$out"
  wait_for 30 "job $jid in sacct" sh -c "sacct -X -n -P -j $jid -o State | grep -q COMPLETED"
  tres=$(sacct -X -n -P -j "$jid" -o AllocTRES)
  case "$tres" in *gres/gpu=1*) ;; *) die "sacct shows no gres/gpu for smoke job $jid: $tres";; esac
  log "sacct: $(sacct -X -n -P -j "$jid" -o JobID,State,Partition,Account,AllocTRES)"
fi

log "cluster $CLUSTER up: $(sinfo -h -o '%P %a %D %T %G' | tr '\n' ';')"
log "pids: munged=$(cat $MUNGE_PID) mariadbd=$(cat $DB_PID) slurmdbd=$(cat $DBD_PID) slurmctld=$(cat $CTLD_PID) slurmd=$(cat $SLURMD_PID)"
log "slurm-up done in $(elapsed) s"
