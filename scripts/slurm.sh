#!/usr/bin/env bash
# A single-node SLURM cluster on this machine (tests, and trying `bench study run --launcher
# slurm` before a real cluster): scripts/slurm.sh start|stop|status.
#
# start: installs Debian's slurmctld, slurmd and munge when missing (apt-get, as root), writes
#   a slurm.conf naming this host with its real CPUs and memory (`slurmd -C`), with
#   proctrack/linuxproc, task/none, select/cons_tres (CR_Core_Memory), its own munge key and
#   socket, state and spool folders under $TICKETBENCH_SLURM_DIR and non-default ports, then
#   starts munged, slurmctld and slurmd and waits until the node is idle. Idempotent: a
#   running cluster is left as it is.
# Commands then need SLURM_CONF=$TICKETBENCH_SLURM_DIR/slurm.conf (start prints the export).
set -euo pipefail

DIR=${TICKETBENCH_SLURM_DIR:-/tmp/ticketbench-slurm}
CTLD_PORT=${TICKETBENCH_SLURMCTLD_PORT:-16817}
SLURMD_PORT=${TICKETBENCH_SLURMD_PORT:-16818}
CONF=$DIR/slurm.conf
HOST=$(hostname -s)
export SLURM_CONF=$CONF

die() { echo "slurm.sh: $*" >&2; exit 1; }

install() {
  local need=()
  for cmd in slurmctld slurmd munged sinfo; do command -v "$cmd" >/dev/null 2>&1 || need+=("$cmd"); done
  [ ${#need[@]} -eq 0 ] && return
  [ "$(id -u)" -eq 0 ] || die "needs root to install slurmctld slurmd munge (missing: ${need[*]})"
  command -v apt-get >/dev/null 2>&1 || die "no apt-get: install slurmctld, slurmd and munge"
  echo "slurm.sh: installing slurmctld slurmd munge (Debian packages)" >&2
  # Package scripts must not start the daemons with Debian's default configuration.
  local policy=/usr/sbin/policy-rc.d made=""
  if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; made=1; fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd munge slurm-client >/dev/null
  [ -n "$made" ] && rm -f "$policy"
  return 0
}

write_conf() {
  mkdir -p "$DIR/state" "$DIR/spool" "$DIR/munge" "$DIR/log"
  chmod 700 "$DIR/munge"
  [ -s "$DIR/munge/munge.key" ] || { dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 2>/dev/null; chmod 400 "$DIR/munge/munge.key"; }
  # The node as slurmd sees it (CPUs, sockets, cores, threads, RealMemory), named by this host.
  local node
  node=$(slurmd -C | head -1 | sed "s/^NodeName=[^ ]*/NodeName=$HOST/")
  cat >"$CONF" <<EOF
ClusterName=ticketbench
SlurmctldHost=$HOST
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$DIR/munge/munge.socket
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
MpiDefault=none
SwitchType=switch/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
$node State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

start() {
  install
  write_conf
  if ! alive "$DIR/munge/munged.pid"; then
    munged --force --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.socket" \
      --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/log/munged.log" \
      --seed-file="$DIR/munge/munged.seed"
  fi
  alive "$DIR/slurmctld.pid" || slurmctld -f "$CONF"
  alive "$DIR/slurmd.pid" || slurmd -f "$CONF"
  for _ in $(seq 60); do
    if sinfo -h -n "$HOST" -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
      echo "slurm.sh: running on $HOST ($(sinfo -h -o '%c CPUs, %m MB')); export SLURM_CONF=$CONF"
      return 0
    fi
    sleep 0.5
  done
  tail -n 5 "$DIR"/log/*.log >&2 || true
  die "the node did not come up within 30 s (logs in $DIR/log)"
}

stop() {
  for pid in "$DIR/slurmd.pid" "$DIR/slurmctld.pid" "$DIR/munge/munged.pid"; do
    if alive "$pid"; then
      kill "$(cat "$pid")"
      for _ in $(seq 40); do alive "$pid" || break; sleep 0.25; done
    fi
    rm -f "$pid"
  done
  echo "slurm.sh: stopped"
}

status() {
  local up=0
  for d in munge/munged slurmctld slurmd; do
    if alive "$DIR/$d.pid"; then echo "$(basename "$d"): running (pid $(cat "$DIR/$d.pid"))"
    else echo "$(basename "$d"): not running"; up=1; fi
  done
  [ $up -eq 0 ] && sinfo
  return $up
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: scripts/slurm.sh start|stop|status" >&2; exit 2 ;;
esac
