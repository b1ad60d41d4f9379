#!/usr/bin/env bash
# A real one-node SLURM cluster on this CI machine, for tests/test_slurm.py: munged, slurmctld and slurmd on
# localhost with two fake GPUs (gres/gpu backed by character device files, so no NVIDIA hardware is needed).
#
#   .ci/slurm.sh          install (Debian packages, if missing), configure, start; returns once the node is idle
#   .ci/slurm.sh stop     undo all of it: stop the daemons, delete every file and folder the start created, purge the
#                         packages the start installed and delete the users and groups they added
#
# Needs root on Debian/Ubuntu. It never touches a cluster it did not set up: an existing /etc/slurm/slurm.conf
# without this script's marker line is left alone (and start fails). No slurmdbd: `sacct` does not work here, so
# Snakemake's SLURM plugin must poll with `squeue` (MinJobAge below keeps finished jobs visible to squeue).
#
# Why stop must undo everything: the SLURM executor plugin runs `scontrol show config` whenever Snakemake starts,
# whatever the executor; with a slurm.conf left pointing at a stopped controller every later `snakemake` call on
# the machine waits ~9 s for it. The start keeps a list of the machine's packages, users, groups and of every path
# under the folders it touches (TOUCHED) in $STATE/machine.at-start; stop purges the packages the start installed,
# deletes the users, groups and paths that were not there before, and fails if the list then differs. A start that
# fails undoes itself the same way. Not undone: `apt-get update`'s package lists (a cache).
set -euo pipefail

STATE=${COTSCALE_SLURM_STATE:-/run/cotscale-slurm}
CONF_DIR=/etc/slurm
MARKER="# written by cotscale .ci/slurm.sh"
GPUS=2
PACKAGES=(slurmctld slurmd slurm-client munge)

log() { echo "slurm.sh: $*" >&2; }

gone() {  # the process has exited (a <defunct> one is dead: PID 1 does not reap here)
    [ ! -e "/proc/$1" ] || [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" = Z ]
}

stop_daemons() {
    local name pid
    for name in slurmd slurmctld munged; do
        [ -f "$STATE/$name.pid" ] || continue
        pid=$(cat "$STATE/$name.pid")
        if [ -n "$pid" ] && kill "$pid" 2>/dev/null; then
            for _ in $(seq 100); do gone "$pid" && break; sleep 0.1; done
            gone "$pid" || kill -9 "$pid" 2>/dev/null || true
            log "stopped $name ($pid)"
        fi
        rm -f "$STATE/$name.pid"
    done
}

installed() { dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' | awk '$1 !~ /^.n/ {print $2}' | sort; }
users() { getent passwd | cut -d: -f1 | sort; }
groups() { getent group | cut -d: -f1 | sort; }

# Everything of the machine that a start can change; `stop` compares it with the start's copy and fails on a difference.
TOUCHED=("$CONF_DIR" /etc/munge /run/munge /var/log/munge /var/lib/munge /var/spool/slurmctld /var/spool/slurmd
    /var/log/slurm /var/lib/slurm "$STATE")
machine() {
    installed
    users | sed 's/^/user /'
    groups | sed 's/^/group /'
    paths | sed 's/^/path /'
}

paths() { find "${TOUCHED[@]}" 2>/dev/null | sort || true; }  # find fails on the folders that do not exist

record_added() {  # what the start's package installation added: packages, users, groups (also if interrupted)
    [ -f "$STATE/installing" ] || return 0
    grep -v '^\(user\|group\|path\) ' "$STATE/machine.at-start" | comm -13 - <(installed) >"$STATE/packages"
    sed -n 's/^user //p' "$STATE/machine.at-start" | comm -13 - <(users) >"$STATE/users"
    sed -n 's/^group //p' "$STATE/machine.at-start" | comm -13 - <(groups) >"$STATE/groups"
    rm -f "$STATE/installing"
}

undo() {
    stop_daemons
    record_added
    local path name
    if [ -s "$STATE/packages" ]; then
        log "purging the packages the start installed: $(tr '\n' ' ' <"$STATE/packages")"
        # shellcheck disable=SC2046
        DEBIAN_FRONTEND=noninteractive timeout 300 apt-get purge -y -qq $(cat "$STATE/packages") >/dev/null \
            || log "apt-get purge failed: remove them by hand: $(tr '\n' ' ' <"$STATE/packages")"
    fi
    for name in $(cat "$STATE/users" 2>/dev/null); do
        if getent passwd "$name" >/dev/null; then userdel "$name" || true; fi
    done
    for name in $(cat "$STATE/groups" 2>/dev/null); do
        if getent group "$name" >/dev/null; then groupdel "$name" || true; fi
    done
    if [ -f "$STATE/machine.at-start" ]; then  # every path under TOUCHED that the start (or its daemons) created
        sed -n 's/^path //p' "$STATE/machine.at-start" >"$STATE/paths.at-start"
        paths | comm -13 "$STATE/paths.at-start" - | sort -r \
            | while IFS= read -r path; do
                case $path in "$STATE" | "$STATE"/*) ;; *) rm -rf -- "$path" ;; esac
            done
    fi
    remove_marked
    rm -rf -- "$STATE"
}

remove_marked() {  # configuration files ours by the marker, also from a start of an older version of this script
    local path
    for path in "$CONF_DIR/slurm.conf" "$CONF_DIR/gres.conf"; do
        if [ -f "$path" ] && grep -qF "$MARKER" "$path"; then rm -f -- "$path"; fi
    done
}

if [ "${1:-start}" = stop ]; then
    if [ ! -d "$STATE" ] && [ ! -f "$CONF_DIR/slurm.conf" ]; then
        log "nothing to stop"
        exit 0
    fi
    before=$(cat "$STATE/machine.at-start" 2>/dev/null || true)
    undo
    if [ -n "$before" ] && ! difference=$(diff <(echo "$before") <(machine)); then
        log "stopped, but the machine differs from before the start (< before, > now):"
        echo "$difference" >&2
        exit 1
    fi
    log "stopped; the machine is as before the start"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    log "needs root (it installs packages and writes $CONF_DIR)"
    exit 1
fi
if [ -f "$CONF_DIR/slurm.conf" ] && ! grep -qF "$MARKER" "$CONF_DIR/slurm.conf"; then
    log "$CONF_DIR/slurm.conf exists and was not written by this script: not touching that cluster"
    exit 1
fi
if [ -d "$STATE" ] && sinfo -h >/dev/null 2>&1; then
    log "already running: $(sinfo -h -o '%P %D %t %G')"
    exit 0
fi
[ -d "$STATE" ] && undo  # the remains of a start that was never stopped
remove_marked
before=$(machine)
mkdir -p "$STATE"
echo "$before" >"$STATE/machine.at-start"
trap 'status=$?; if [ "$status" -ne 0 ]; then log "start failed: undoing it"; undo; fi' EXIT
trap 'exit 143' TERM INT  # a start killed by `timeout` undoes itself too

# --- packages ---------------------------------------------------------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sbatch >/dev/null \
    || ! command -v munged >/dev/null; then
    log "installing ${PACKAGES[*]}"
    touch "$STATE/installing"
    export DEBIAN_FRONTEND=noninteractive
    timeout 300 apt-get update -qq
    timeout 600 apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
    record_added
fi

# --- configuration ----------------------------------------------------------------------------------------------
mkdir -p "$STATE/dev" "$CONF_DIR" /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
for i in $(seq 0 $((GPUS - 1))); do
    [ -c "$STATE/dev/nvidia$i" ] || mknod "$STATE/dev/nvidia$i" c 195 "$i"  # gres needs device files, not regular ones
done

# The node line from slurmd's own view of the machine, with ~90% of its memory schedulable.
node=$(slurmd -C | head -1)
cpus=$(sed -n 's/.* CPUs=\([0-9]*\).*/\1/p' <<<"$node")
boards=$(sed -n 's/.* Boards=\([0-9]*\).*/\1/p' <<<"$node")
sockets=$(sed -n 's/.* SocketsPerBoard=\([0-9]*\).*/\1/p' <<<"$node")
cores=$(sed -n 's/.* CoresPerSocket=\([0-9]*\).*/\1/p' <<<"$node")
threads=$(sed -n 's/.* ThreadsPerCore=\([0-9]*\).*/\1/p' <<<"$node")
memory=$(sed -n 's/.* RealMemory=\([0-9]*\).*/\1/p' <<<"$node")
memory=$((memory * 9 / 10))

cat >"$CONF_DIR/slurm.conf" <<EOF
$MARKER: a one-node test cluster with $GPUS fake GPUs. Stop it with .ci/slurm.sh stop.
ClusterName=cotscale-ci
SlurmctldHost=localhost
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1024
GresTypes=gpu
ReturnToService=2
MinJobAge=600
SchedulerType=sched/backfill
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=$STATE/slurmctld.pid
SlurmdPidFile=$STATE/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus Boards=$boards SocketsPerBoard=$sockets CoresPerSocket=$cores ThreadsPerCore=$threads RealMemory=$memory Gres=gpu:$GPUS State=UNKNOWN
PartitionName=ci Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
cat >"$CONF_DIR/gres.conf" <<EOF
$MARKER
AutoDetect=off
NodeName=localhost Name=gpu File=$STATE/dev/nvidia[0-$((GPUS - 1))]
EOF

# --- daemons ----------------------------------------------------------------------------------------------------
mkdir -p /etc/munge /run/munge /var/log/munge /var/lib/munge
if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
chown munge:munge /etc/munge/munge.key /run/munge /var/log/munge /var/lib/munge
chmod 400 /etc/munge/munge.key
chmod 755 /run/munge
runuser -u munge -- munged  # writes /run/munge/munged.pid
for _ in $(seq 50); do [ -s /run/munge/munged.pid ] && break; sleep 0.1; done
cp /run/munge/munged.pid "$STATE/munged.pid"
slurmctld
slurmd -N localhost

# The node goes through UNKNOWN (and maybe DOWN, resumed by ReturnToService) to idle.
for _ in $(seq 150); do
    if [ "$(sinfo -h -n localhost -o %t 2>/dev/null)" = idle ]; then
        log "ready: $(sinfo -h -o '%P %D %t %G')"
        log "stop it with: $0 stop"
        exit 0
    fi
    sleep 0.2
done
log "the node did not become idle within 30 s:"
sinfo -N -l >&2 || true
tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2 || true
exit 1
