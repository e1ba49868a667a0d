#!/usr/bin/env bash
# iscsifs benchmark: fio side by side on qemu-storage-daemon's FUSE export and on iscsifs,
# both logged in to the same tgt LUN, plus libiscsi's iscsi-perf as the transport ceiling.
# A measurement script, not a test: it asserts nothing; goals are read from its table.
# See tests/bench/README.md.
#
#   tests/bench/run.sh [--quick] [--out DIR] [--only qsd|iscsifs|all] [--parts LIST] [--cold] [--no-pin] [--no-build]
#
# Needs root (tgtd, FUSE mounts, drop_caches).  Everything it starts lives under one
# /dev/shm/iscsifs-bench.XXXXXX directory and is stopped by the EXIT trap.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
IQN=iqn.2026-11.org.iscsifs:bench

QUICK=0
OUT="$HERE/out"
ONLY=all
COLD=0
PIN=1
BUILD=1
PARTS=A,B,C,D,E

usage() {
    cat <<EOF
usage: $0 [--quick] [--out DIR] [--only qsd|iscsifs|all] [--parts LIST] [--cold] [--no-pin] [--no-build]
  --quick       3 s per job instead of 6 s
  --parts LIST  comma-separated parts to run (default A,B,C,D,E): A the original seven
                jobs (1 GiB LUN, 256 MiB region); B beyond the cache (2 GiB LUN, eight
                times the cache: cold random reads QD1 and QD32, random writes QD32 and
                buffered QD1, sequential 128 KiB reads and 1 MiB writes, with iscsi-perf
                and a RAM-backed FUSE file as ceilings); C part B's first four jobs at
                sessions=4; D four LUNs read in parallel; E peak RSS with 16 LUNs read
                in parallel and with a 1000-LUN target
  --out DIR     where results.md, results.json, bench.png and raw/ go (default $HERE/out)
  --only WHAT   run only the qsd series (plus the RAM reference) or only iscsifs
  --cold        fresh mount before every measured fio run (default: one mount per
                system's series, so a daemon cache stays warm from job to job)
  --no-pin      do not pin: by default the clients (fio, iscsi-perf) run on CPU 0 and
                the servers (tgtd, qemu-storage-daemon, iscsifs) on the last CPU, because
                on a small VM a FUSE round trip costs 5x more across CPUs than on one, and
                unpinned runs flip between the two at random
  --no-build    do not try to build build/iscsifs when it is missing
Environment: ISCSIFS=path to the iscsifs binary (default $REPO/build/iscsifs).
EOF
}

while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --out) [ $# -ge 2 ] || { usage >&2; exit 2; }; OUT=$2; shift ;;
        --out=*) OUT=${1#--out=} ;;
        --only) [ $# -ge 2 ] || { usage >&2; exit 2; }; ONLY=$2; shift ;;
        --only=*) ONLY=${1#--only=} ;;
        --cold) COLD=1 ;;
        --parts) [ $# -ge 2 ] || { usage >&2; exit 2; }; PARTS=$2; shift ;;
        --parts=*) PARTS=${1#--parts=} ;;
        --no-pin) PIN=0 ;;
        --no-build) BUILD=0 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
case "$ONLY" in qsd|iscsifs|all) ;; *) echo "--only takes qsd, iscsifs or all" >&2; exit 2 ;; esac
part() { [[ ,$PARTS, == *,$1,* ]]; }

RUNTIME=6
[ "$QUICK" = 1 ] && RUNTIME=3
HALF_MS=$((RUNTIME * 500))               # each job = two runs of runtime/2
RAMP=1
FIO_TIMEOUT=$((RUNTIME + RAMP + 90))     # per fio run, generous: startup on a slow FUSE file
PERF_SECS=$((RUNTIME > 4 ? 5 : 3))

NCPU=$(nproc)
CLI=() SRV=()
if [ "$PIN" = 1 ] && [ "$NCPU" -ge 2 ]; then
    CLI=(taskset -c 0) SRV=(taskset -c $((NCPU - 1)))
else
    PIN=0
fi

log() { printf '[bench %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "FATAL: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (tgtd, FUSE mounts and drop_caches need it)"

# ---------------------------------------------------------------- packages
PKGS=(tgt fio libiscsi-bin qemu-system-common qemu-block-extra gnuplot-nox fuse3 python3 procps)
ensure_packages() {
    local missing=() p
    for p in "${PKGS[@]}"; do
        dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing: ${missing[*]}"
        timeout 600 apt-get update -q >&2 || die "apt-get update failed"
        DEBIAN_FRONTEND=noninteractive timeout 1200 apt-get install -y -q "${missing[@]}" >&2 \
            || die "apt-get install ${missing[*]} failed"
    fi
    # Debian 12 ships qemu-storage-daemon in qemu-system-common; the iscsi block driver is
    # the block-iscsi.so module of qemu-block-extra.
    command -v qemu-storage-daemon >/dev/null || die "qemu-storage-daemon not found"
    qemu-storage-daemon --help 2>&1 | grep -q 'type=\]fuse' \
        || die "this qemu-storage-daemon was built without the FUSE export"
    ls /usr/lib/*/qemu/block-iscsi.so >/dev/null 2>&1 \
        || die "QEMU's iscsi block driver (qemu-block-extra: block-iscsi.so) is missing"
    [ -c /dev/fuse ] || modprobe fuse 2>/dev/null || true
    [ -c /dev/fuse ] || die "/dev/fuse is missing"
}
ensure_packages

# ---------------------------------------------------------------- state and cleanup
WORK=$(mktemp -d /dev/shm/iscsifs-bench.XXXXXX) || die "mktemp failed"
RAW="$OUT/raw"
mkdir -p "$OUT" || die "cannot create $OUT"
rm -rf "$RAW"; rm -f "$OUT/results.md" "$OUT/results.json" "$OUT/bench.png"
mkdir -p "$RAW"
META="$RAW/meta.tsv"
: >"$META"
meta() { printf '%s\t%s\n' "$1" "$2" >>"$META"; }

TGTD_PID='' PORT='' CP=''
CUR_SYS='' CUR_MP='' CUR_PID='' CUR_FILE='' CUR_FILES=()
STARTED_PIDS=()          # every daemon we started (checked against $WORK before a kill)
FUSECTL_MOUNTED=0
STATS_N=0
declare -A RSS_MAX=()

is_mounted() { awk -v m="$1" '$5 == m { f = 1 } END { exit !f }' /proc/self/mountinfo; }

wait_until() {           # wait_until SECONDS CMD...: poll every 0.1 s
    local deadline=$((SECONDS + $1)); shift
    while ! "$@"; do
        [ $SECONDS -ge $deadline ] && return 1
        sleep 0.1
    done
}

pid_alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null && [ "$(awk '{print $3}' /proc/"$1"/stat 2>/dev/null)" != Z ]; }
pid_gone() { ! pid_alive "$1"; }

# stop_pid refuses processes whose command line does not name $WORK; tgtd's does not, so
# it gets its own ownership rule: the PID we started, still running tgtd.
ours() {
    [ -n "$1" ] || return 1
    if [ -n "$TGTD_PID" ] && [ "$1" = "$TGTD_PID" ]; then
        [ "$(cat /proc/"$1"/comm 2>/dev/null)" = tgtd ]
        return
    fi
    tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF "$WORK"
}

stop_pid() {             # stop_pid PID GRACE_SECONDS: TERM, then KILL; only our own daemons
    local pid=$1 grace=${2:-10}
    pid_alive "$pid" || { wait "$pid" 2>/dev/null; return 0; }
    ours "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null
    if ! wait_until "$grace" pid_gone "$pid"; then
        log "pid $pid ignored SIGTERM for ${grace}s; SIGKILL"
        kill -KILL "$pid" 2>/dev/null
        wait_until 5 pid_gone "$pid"
    fi
    wait "$pid" 2>/dev/null
    return 0
}

abort_fuse() {           # last resort for a wedged FUSE mount: abort its connection
    local mp=$1 dev minor
    dev=$(awk -v m="$mp" '$5 == m { print $3 }' /proc/self/mountinfo | tail -n1)
    [ -n "$dev" ] || return 0
    minor=${dev#*:}
    if [ ! -d "/sys/fs/fuse/connections/$minor" ] && ! grep -q ' /sys/fs/fuse/connections ' /proc/mounts; then
        mount -t fusectl fusectl /sys/fs/fuse/connections 2>/dev/null && FUSECTL_MOUNTED=1
    fi
    [ -e "/sys/fs/fuse/connections/$minor/abort" ] && echo 1 >"/sys/fs/fuse/connections/$minor/abort"
}

unmount_fuse() {         # unmount_fuse MOUNTPOINT PID GRACE: unmount, then wait for the daemon
    local mp=$1 pid=$2 grace=$3
    if is_mounted "$mp"; then
        timeout "$grace" fusermount3 -u "$mp" 2>/dev/null \
            || timeout 10 umount "$mp" 2>/dev/null \
            || { log "unmount of $mp failed; aborting the FUSE connection"; abort_fuse "$mp"; umount -l "$mp" 2>/dev/null; }
    fi
    if [ -n "$pid" ]; then
        # iscsifs writes its dirty data and exits on unmount; qsd stays up until SIGTERM.
        wait_until "$grace" pid_gone "$pid" || true
        stop_pid "$pid" 10
    fi
}

record_rss() {           # VmHWM of the current daemon, max over its mounts
    local kb
    [ -n "$CUR_PID" ] || return 0
    kb=$(awk '/^VmHWM:/ { print $2 }' "/proc/$CUR_PID/status" 2>/dev/null)
    [ -n "$kb" ] || return 0
    if [ -z "${RSS_MAX[$CUR_SYS]:-}" ] || [ "$kb" -gt "${RSS_MAX[$CUR_SYS]}" ]; then
        RSS_MAX[$CUR_SYS]=$kb
    fi
}

stop_tgtd() {
    [ -n "$TGTD_PID" ] || return 0
    if pid_alive "$TGTD_PID"; then
        timeout 10 tgtadm -C "$CP" --lld iscsi --op update --mode sys --name State -v offline >/dev/null 2>&1
        timeout 10 tgtadm -C "$CP" --lld iscsi --op delete --mode target --tid 1 --force >/dev/null 2>&1
        timeout 10 tgtadm -C "$CP" --op delete --mode system >/dev/null 2>&1
        wait_until 10 pid_gone "$TGTD_PID" || true
        stop_pid "$TGTD_PID" 5     # tgtd does not exit on SIGTERM; stop_pid goes on to SIGKILL
    fi
    wait "$TGTD_PID" 2>/dev/null
    rm -f "/var/run/tgtd/socket.$CP" "/var/run/tgtd/socket.$CP.lock"
    TGTD_PID=
}

cleanup() {
    local rc=$? pid m
    trap - EXIT INT TERM
    set +e
    declare -F unmount_current >/dev/null && unmount_current 60
    # Anything else of ours still mounted under $WORK (e.g. an interrupted mount).
    for m in $(awk -v w="$WORK/" 'index($5, w) == 1 { print $5 }' /proc/self/mountinfo); do
        unmount_fuse "$m" "" 30
    done
    for pid in "${STARTED_PIDS[@]}"; do stop_pid "$pid" 10; done
    # iscsifs daemonizes: find any leftover daemon by the mountpoint it was given.
    for pid in $(pgrep -f -- "$WORK/" 2>/dev/null); do
        [ "$pid" = $$ ] && continue
        case "$(cat /proc/"$pid"/comm 2>/dev/null)" in iscsifs*|qemu-storage-d*) stop_pid "$pid" 10 ;; esac
    done
    stop_tgtd
    [ "$FUSECTL_MOUNTED" = 1 ] && umount /sys/fs/fuse/connections 2>/dev/null
    if awk -v w="$WORK/" 'index($5, w) == 1 { f = 1 } END { exit !f }' /proc/self/mountinfo; then
        log "something is still mounted under $WORK; leaving it in place"
    else
        rm -rf --one-file-system "$WORK"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'log "interrupted"; exit 130' INT
trap 'log "terminated"; exit 143' TERM

drop_caches() {
    timeout 60 sync
    if ! echo 3 >/proc/sys/vm/drop_caches 2>/dev/null; then
        [ -n "${DROP_WARNED:-}" ] || log "warning: cannot drop page caches"
        DROP_WARNED=1
    fi
}

# ---------------------------------------------------------------- versions
pkgver() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo '?'; }
meta date "$(date -u '+%Y-%m-%d %H:%M UTC')"
meta runtime "$RUNTIME"
meta half_ms "$HALF_MS"
meta quick "$QUICK"
meta load_start "$(cut -d' ' -f1-3 /proc/loadavg)"
meta cold "$COLD"
if [ "$PIN" = 1 ]; then
    meta cpu_policy "clients (fio, iscsi-perf) pinned to CPU 0, servers (tgtd, qsd, iscsifs) to CPU $((NCPU - 1)) of $NCPU"
else
    meta cpu_policy "not pinned ($NCPU CPUs)"
fi
if [ "$COLD" = 1 ]; then
    meta mount_policy "fresh mount before every measured run (--cold)"
else
    meta mount_policy "one fresh mount per system for its whole series"
fi

# ---------------------------------------------------------------- iscsifs binary
BIN=${ISCSIFS:-$REPO/build/iscsifs}
RUN_ISCSIFS=1 ISCSIFS_NOTE=
if [ "$ONLY" = qsd ]; then
    RUN_ISCSIFS=0 ISCSIFS_NOTE="not run (--only qsd)."
elif [ ! -x "$BIN" ] && [ -z "${ISCSIFS:-}" ] && [ "$BUILD" = 1 ]; then
    log "building iscsifs (log: $OUT/iscsifs-build.log)"
    if ! ( cd "$REPO" && { [ -f build/build.ninja ] || timeout 300 meson setup build; } \
             && timeout 900 ninja -C build ) >"$OUT/iscsifs-build.log" 2>&1; then
        log "iscsifs build failed (see $OUT/iscsifs-build.log)"
    fi
fi
if [ "$RUN_ISCSIFS" = 1 ] && [ ! -x "$BIN" ]; then
    RUN_ISCSIFS=0 ISCSIFS_NOTE="skipped: no executable at $BIN (build failed or not attempted; see out/iscsifs-build.log)."
    log "$ISCSIFS_NOTE"
fi
ISCSIFS_VER="not run"
if [ "$RUN_ISCSIFS" = 1 ]; then
    ISCSIFS_VER=$( { timeout 5 "$BIN" --version </dev/null 2>&1 || true; } | head -n1)
    [ -n "$ISCSIFS_VER" ] || ISCSIFS_VER="?"
    ISCSIFS_VER="$ISCSIFS_VER ($(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo 'no commit'))"
fi
meta versions "fio $(pkgver fio), qemu-storage-daemon $(pkgver qemu-system-common), tgt $(pkgver tgt), libiscsi $(pkgver libiscsi-bin), fuse3 $(pkgver fuse3), kernel $(uname -r), iscsifs: $ISCSIFS_VER"

# ---------------------------------------------------------------- the LUN
log "creating the 1 GiB backing file (first 256 MiB random) in $WORK"
IMG="$WORK/lun1.img"
truncate -s 1G "$IMG" || die "truncate failed"
dd if=/dev/urandom of="$IMG" bs=1M count=256 conv=notrunc status=none || die "dd failed"

free_tcp_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
free_control_port() {    # tgtd's management socket is /var/run/tgtd/socket.N (+ .lock)
    local n
    for _ in $(seq 1 200); do
        n=$((20000 + RANDOM % 12000))
        [ -e "/var/run/tgtd/socket.$n.lock" ] && ! flock -n "/var/run/tgtd/socket.$n.lock" true 2>/dev/null && continue
        [ -e "/var/run/tgtd/socket.$n" ] && continue
        echo "$n"; return 0
    done
    return 1
}
portal_up() { timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT" 2>/dev/null; }
tgt_ready() { pid_alive "$TGTD_PID" && timeout 5 tgtadm -C "$CP" --lld iscsi --op show --mode sys >/dev/null 2>&1 && portal_up; }

start_tgtd() {
    local attempt
    for attempt in 1 2 3; do
        PORT=$(free_tcp_port) || die "no free TCP port"
        CP=$(free_control_port) || die "no free tgtd control port"
        log "starting tgtd: portal 127.0.0.1:$PORT, control port $CP"
        "${SRV[@]}" tgtd -f --iscsi "portal=127.0.0.1:$PORT" --control-port "$CP" \
            </dev/null >"$WORK/tgtd.log" 2>&1 &
        TGTD_PID=$!
        if wait_until 15 tgt_ready; then
            return 0
        fi
        log "tgtd did not come up (attempt $attempt): $(tail -n 3 "$WORK/tgtd.log" | tr '\n' ' ')"
        kill -KILL "$TGTD_PID" 2>/dev/null; wait "$TGTD_PID" 2>/dev/null
        rm -f "/var/run/tgtd/socket.$CP" "/var/run/tgtd/socket.$CP.lock"
        TGTD_PID=
    done
    die "could not start tgtd"
}
start_tgtd
tgtadm -C "$CP" --lld iscsi --op new --mode target --tid 1 -T "$IQN" \
    && tgtadm -C "$CP" --lld iscsi --op new --mode logicalunit --tid 1 --lun 1 -b "$IMG" \
    && tgtadm -C "$CP" --lld iscsi --op bind --mode target --tid 1 -I ALL \
    || die "tgtadm configuration failed"
LBS=$(tgtadm -C "$CP" --lld iscsi --op show --mode target \
      | awk '/LUN: 1$/ { l = 1 } l && /Block size:/ { sub(/.*Block size: */, ""); print; exit }')
LBS=${LBS:-512}
URL="iscsi://127.0.0.1:$PORT/$IQN/1"
meta url "$URL"
meta lun_block_size "$LBS"
meta parts "$PARTS"

# Part B and C: LUN 2, 2 GiB of random data, eight times the default cache_size.
# Part D: LUNs 3-6, 1 GiB each (first 256 MiB random, the rest sparse).
# Part E (made after parts A-D: tgtd serving 1000 more LUNs answers every command
# several times slower): target 2 with 16 LUNs of 256 MiB, target 3 with 1000 LUNs of
# 4 MiB (sparse).
add_lun() {              # add_lun TID LUN FILE
    tgtadm -C "$CP" --lld iscsi --op new --mode logicalunit --tid "$1" --lun "$2" -b "$3" \
        || die "tgtadm: LUN $2 of target $1 failed"
}
URL2="iscsi://127.0.0.1:$PORT/$IQN/2"
if part B || part C; then
    log "creating LUN 2: 2 GiB of random data"
    truncate -s 2G "$WORK/lun2.img" || die "truncate failed"
    dd if=/dev/urandom of="$WORK/lun2.img" bs=1M count=2048 conv=notrunc status=none || die "dd failed"
    add_lun 1 2 "$WORK/lun2.img"
fi
if part D; then
    log "creating LUNs 3-6: 1 GiB each"
    for n in 3 4 5 6; do
        truncate -s 1G "$WORK/lun$n.img"
        dd if=/dev/urandom of="$WORK/lun$n.img" bs=1M count=256 conv=notrunc status=none
        add_lun 1 "$n" "$WORK/lun$n.img"
    done
fi
IQN16=$IQN-16luns IQN1000=$IQN-1000luns
make_part_e_targets() {  # only once parts A-D are done: 1000 LUNs slow tgtd down for all
    log "creating target 2 with 16 LUNs of 256 MiB and target 3 with 1000 LUNs of 4 MiB"
    tgtadm -C "$CP" --lld iscsi --op new --mode target --tid 2 -T "$IQN16" || die "tgtadm"
    tgtadm -C "$CP" --lld iscsi --op new --mode target --tid 3 -T "$IQN1000" || die "tgtadm"
    mkdir -p "$WORK/e16" "$WORK/e1000"
    for n in $(seq 1 16); do
        truncate -s 256M "$WORK/e16/$n.img"
        dd if=/dev/urandom of="$WORK/e16/$n.img" bs=1M count=16 conv=notrunc status=none
        add_lun 2 "$n" "$WORK/e16/$n.img"
    done
    for n in $(seq 1 1000); do
        truncate -s 4M "$WORK/e1000/$n.img"
        add_lun 3 "$n" "$WORK/e1000/$n.img"
    done
    tgtadm -C "$CP" --lld iscsi --op bind --mode target --tid 2 -I ALL || die "tgtadm"
    tgtadm -C "$CP" --lld iscsi --op bind --mode target --tid 3 -I ALL || die "tgtadm"
}

# ---------------------------------------------------------------- iscsi-perf
run_iscsi_perf() {       # run_iscsi_perf NAME BYTES MAXQ [-r]  (PERF_URL: the LUN, default LUN 1)
    local name=$1 bytes=$2 maxq=$3; shift 3
    log "iscsi-perf $name"
    timeout -k 5 $((PERF_SECS + 20)) "${CLI[@]}" iscsi-perf -t "$PERF_SECS" -b $((bytes / LBS)) -m "$maxq" "$@" "${PERF_URL:-$URL}" \
        </dev/null 2>&1 | tr '\r' '\n' >"$RAW/iscsi-perf-$name.txt"
}
if part A; then
    run_iscsi_perf rand4k-qd1 4096 1 -r
    run_iscsi_perf rand4k-qd32 4096 32 -r
    run_iscsi_perf seq1m-qd8 1048576 8
fi
if part B; then
    PERF_URL=$URL2 run_iscsi_perf rand4k-qd1-2g 4096 1 -r
    PERF_URL=$URL2 run_iscsi_perf rand4k-qd32-2g 4096 32 -r
fi

# ---------------------------------------------------------------- mounts
find_daemon_pid() {      # find_daemon_pid COMM_PREFIX MOUNTPOINT
    local pid
    for pid in $(pgrep -f -- "$2" 2>/dev/null); do
        [ "$pid" = $$ ] && continue
        case "$(cat /proc/"$pid"/comm 2>/dev/null)" in "$1"*) echo "$pid"; return 0 ;; esac
    done
    return 1
}

start_qsd() {            # start_qsd SYS MOUNTFILE BLOCKDEV [MOUNTFILE BLOCKDEV]...: one daemon
    local sys=$1 pid mp first='' k=0 args=()
    shift
    CUR_FILES=()
    while [ $# -ge 2 ]; do
        mp=$1
        rm -f "$mp"; : >"$mp"      # a FUSE export's mountpoint is a regular file
        args+=(--blockdev "${2/node-name=n0/node-name=n$k}"
               --export "type=fuse,id=e$k,node-name=n$k,mountpoint=$mp,writable=on")
        CUR_FILES+=("$mp")
        [ -n "$first" ] || first=$mp
        k=$((k + 1))
        shift 2
    done
    "${SRV[@]}" qemu-storage-daemon "${args[@]}" </dev/null >>"$WORK/$sys.log" 2>&1 &
    pid=$!
    STARTED_PIDS+=("$pid")
    for mp in "${CUR_FILES[@]}"; do
        if ! wait_until 20 is_mounted "$mp"; then
            SERIES_FAILED="qemu-storage-daemon ($sys) did not mount: $(tail -n 3 "$WORK/$sys.log" | tr '\n' ' ')"
            log "$SERIES_FAILED"
            stop_pid "$pid" 5
            return 1
        fi
    done
    CUR_SYS=$sys CUR_MP=$first CUR_FILE=$first
    CUR_PID=$(find_daemon_pid qemu-storage-d "$first") || CUR_PID=$pid
}

is_ifs() { case "$1" in iscsifs|ifs*) return 0 ;; esac; return 1; }

start_ifs() {            # start_ifs SYS URL OPTIONS FILE...: an iscsifs mount on $WORK/mnt
    local sys=$1 url=$2 opts=$3 mp="$WORK/mnt" rc f
    shift 3
    mkdir -p "$mp"
    timeout 120 "${SRV[@]}" "$BIN" ${opts:+-o "$opts"} "$url" "$mp" </dev/null >>"$WORK/iscsifs.log" 2>&1
    rc=$?
    if [ $rc != 0 ]; then
        SERIES_FAILED="the mount command '$BIN ${opts:+-o $opts} $url $mp' exited $rc: $(tail -n 3 "$WORK/iscsifs.log" | tr '\n' ' ')"
        log "$SERIES_FAILED"
        CUR_SYS=$sys CUR_MP=$mp CUR_PID=$(find_daemon_pid "$(basename "$BIN" | cut -c1-15)" "$mp")
        unmount_current 10
        return 1
    fi
    CUR_SYS=$sys CUR_MP=$mp CUR_FILES=()
    for f in "$@"; do CUR_FILES+=("$mp/$f"); done
    CUR_FILE=${CUR_FILES[0]}
    CUR_PID=$(find_daemon_pid "$(basename "$BIN" | cut -c1-15)" "$mp") || CUR_PID=
    for f in "${CUR_FILES[@]}"; do
        if ! wait_until 30 test -e "$f"; then
            SERIES_FAILED="iscsifs mounted but $f did not appear within 30 s"
            log "$SERIES_FAILED"
            unmount_current 30
            return 1
        fi
    done
    [ -n "$CUR_PID" ] || log "warning: iscsifs daemon PID not found (no RSS figure)"
}

mount_sys() {            # mount_sys SYS: fresh mount; sets CUR_*
    local sys=$1 bd="driver=iscsi,node-name=n0,transport=tcp,portal=127.0.0.1:$PORT,target=$IQN,cache.direct=on"
    case "$sys" in
        qsd)    start_qsd qsd "$WORK/qsd.img" "$bd,lun=1" ;;
        ramref) start_qsd ramref "$WORK/ramref.img" \
                    "driver=file,node-name=n0,filename=$WORK/ram.img,cache.direct=off,aio=threads" ;;
        iscsifs) start_ifs iscsifs "$URL" "" lun1 ;;
        # part B/C: LUN 2 (2 GiB); the RAM reference reads tgtd's own backing file
        qsd2)   start_qsd qsd2 "$WORK/qsd2.img" "$bd,lun=2" ;;
        ram2)   start_qsd ram2 "$WORK/ram2.img" \
                    "driver=file,node-name=n0,filename=$WORK/lun2.img,cache.direct=off,aio=threads" ;;
        ifs2)   start_ifs ifs2 "$URL2" "" lun2 ;;
        ifs2s4) start_ifs ifs2s4 "$URL2" "sessions=4" lun2 ;;
        # part D: LUNs 3-6 at once
        qsd4)   start_qsd qsd4 "$WORK/qsd4-3.img" "$bd,lun=3" "$WORK/qsd4-4.img" "$bd,lun=4" \
                    "$WORK/qsd4-5.img" "$bd,lun=5" "$WORK/qsd4-6.img" "$bd,lun=6" ;;
        ifs4)   start_ifs ifs4 "iscsi://127.0.0.1:$PORT/$IQN" "" lun3 lun4 lun5 lun6 ;;
        *) die "mount_sys: unknown system $sys" ;;
    esac
}

unmount_current() {      # unmount_current GRACE
    [ -n "$CUR_MP" ] || return 0
    record_rss
    if is_ifs "$CUR_SYS" && [ -e "$CUR_MP/.iscsifs/stats.json" ]; then
        STATS_N=$((STATS_N + 1))    # the daemon's own counters (hits, misses, ...) per mount
        timeout 5 cat "$CUR_MP/.iscsifs/stats.json" >"$RAW/iscsifs-stats-$STATS_N.json" 2>/dev/null
    fi
    if ! is_ifs "$CUR_SYS" && [ -n "$CUR_PID" ] && pid_alive "$CUR_PID"; then
        # qemu-storage-daemon does not exit when its export is unmounted; on SIGTERM it
        # unmounts the export itself and exits.
        kill -TERM "$CUR_PID" 2>/dev/null
        wait_until 10 pid_gone "$CUR_PID" || true
    fi
    unmount_fuse "$CUR_MP" "$CUR_PID" "${1:-60}"
    CUR_MP='' CUR_PID='' CUR_FILE=''
}

# ---------------------------------------------------------------- fio
# id | fio arguments (besides the common ones)
JOB_IDS=(seqread seqwrite randread1 randread4 randwrite1 hotread randrw4)
declare -A JOB_ARGS=(
    [seqread]="--bs=1M --rw=read --size=256M"
    [seqwrite]="--bs=1M --rw=write --size=256M"
    [randread1]="--bs=4k --rw=randread --size=256M"
    [randread4]="--bs=4k --rw=randread --size=256M --numjobs=4"
    [randwrite1]="--bs=4k --rw=randwrite --size=256M"
    [hotread]="--bs=4k --rw=randread --size=64M --direct=1"
    [randrw4]="--bs=4k --rw=randrw --rwmixread=70 --size=256M --numjobs=4"
    # part B (and C): the whole 2 GiB LUN, eight times the cache
    [b_rand1]="--bs=4k --rw=randread"
    [b_rand32]="--bs=4k --rw=randread --ioengine=libaio --iodepth=32 --direct=1"
    [b_wrand32]="--bs=4k --rw=randwrite --ioengine=libaio --iodepth=32 --direct=1"
    [b_seq128]="--bs=128k --rw=read --direct=1"
    [b_wrand1]="--bs=4k --rw=randwrite"
    [b_seqwrite]="--bs=1M --rw=write"
    # part D: one job per LUN, four LUNs at once
    [d_par4]="--bs=4k --rw=randread --ioengine=libaio --iodepth=8 --direct=1"
)
B_JOBS=(b_rand1 b_rand32 b_wrand32 b_seq128 b_wrand1 b_seqwrite)
C_JOBS=(b_rand1 b_rand32 b_wrand32 b_seq128)

fio_once() {             # fio_once OUTJSON JOBID FILE...: one fio job per FILE, reported together
    local out=$1 job=$2 rc f k=0 per=()
    shift 2
    for f in "$@"; do per+=(--name="$job-$k" --filename="$f"); k=$((k + 1)); done
    drop_caches
    # shellcheck disable=SC2086  # JOB_ARGS holds several words on purpose
    timeout -k 10 "$FIO_TIMEOUT" "${CLI[@]}" fio --ioengine=psync \
        --offset=0 --time_based --runtime="${HALF_MS}ms" --ramp_time="$RAMP" \
        --group_reporting --output-format=json ${JOB_ARGS[$job]} "${per[@]}" \
        </dev/null >"$out" 2>"${out%.json}.err"
    rc=$?
    [ $rc = 0 ] || log "fio $job on $CUR_SYS exited $rc: $(tail -n 2 "${out%.json}.err" | tr '\n' ' ')"
    return $rc
}

daemon_ok() {
    is_mounted "$CUR_MP" && { [ -z "$CUR_PID" ] || pid_alive "$CUR_PID"; }
}

SERIES_FAILED=
SERIES_COLD=0            # 1: fresh mount before every measured run of this series
cold() { [ "$COLD" = 1 ] || [ "$SERIES_COLD" = 1 ]; }
run_job() {              # run_job SYS JOBID
    local sys=$1 job=$2 n s
    if [ "$job" = hotread ]; then
        cold && { unmount_current; mount_sys "$sys" || return 1; }
        log "$sys $job: warm-up run (not measured)"
        fio_once "$RAW/$sys-$job-warmup.json" "$job" "${CUR_FILES[@]}"
    fi
    for n in 1 2; do
        if cold && [ "$job" != hotread ]; then
            unmount_current; mount_sys "$sys" || return 1
        fi
        fio_once "$RAW/$sys-$job-$n.json" "$job" "${CUR_FILES[@]}"
        daemon_ok || { SERIES_FAILED="$sys died or lost its mount during $job"; return 1; }
    done
    s=$(python3 "$HERE/report.py" spread "$RAW/$sys-$job-1.json" "$RAW/$sys-$job-2.json")
    case $? in
        0) log "$sys $job: halves within 25% (spread $s)" ;;
        1) log "$sys $job: halves differ by $s > 0.25: third run, median of three"
           if cold && [ "$job" != hotread ]; then
               unmount_current; mount_sys "$sys" || return 1
           fi
           fio_once "$RAW/$sys-$job-3.json" "$job" "${CUR_FILES[@]}"
           daemon_ok || { SERIES_FAILED="$sys died or lost its mount during $job"; return 1; } ;;
        *) log "$sys $job: $s" ;;
    esac
    return 0
}

run_series() {           # run_series SYS JOBID...
    local sys=$1 job; shift
    log "=== $sys series: mounting"
    mount_sys "$sys" || return 1
    for job in "$@"; do
        run_job "$sys" "$job" || { log "$sys series aborted: ${SERIES_FAILED:-mount failed}"; break; }
    done
    unmount_current 120
    [ -n "${RSS_MAX[$sys]:-}" ] && meta "rss_${sys}_kb" "${RSS_MAX[$sys]}"
    [ -z "$SERIES_FAILED" ]
}

run_ours() {             # run_ours SYS JOBID...: an iscsifs series, its failure noted
    local sys=$1
    [ "$RUN_ISCSIFS" = 1 ] || return 0
    if ! run_series "$@"; then
        ISCSIFS_NOTE+="${ISCSIFS_NOTE:+ }$sys: series incomplete: ${SERIES_FAILED:-mount failed}."
        [ -s "$WORK/iscsifs.log" ] && cp "$WORK/iscsifs.log" "$OUT/iscsifs.log" && ISCSIFS_NOTE+=" Log: out/iscsifs.log."
    fi
    SERIES_FAILED=
}
run_theirs() {           # run_theirs SYS JOBID...: a qemu-storage-daemon series
    local sys=$1
    [ "$ONLY" != iscsifs ] || return 0
    run_series "$@" || meta "${sys}_note" "series incomplete: ${SERIES_FAILED:-mount failed}"
    SERIES_FAILED=
}

# ---------------------------------------------------------------- part A
if part A; then
    run_theirs qsd "${JOB_IDS[@]}"
    # RAM-backed FUSE reference for the hot-read job: the same FUSE export code, over a
    # /dev/shm file instead of iSCSI.
    truncate -s 256M "$WORK/ram.img"
    dd if=/dev/urandom of="$WORK/ram.img" bs=1M count=64 conv=notrunc status=none
    run_series ramref hotread || meta ramref_note "series incomplete: ${SERIES_FAILED:-mount failed}"
    SERIES_FAILED=
    rm -f "$WORK/ram.img"
    run_ours iscsifs "${JOB_IDS[@]}"
fi

# ---------------------------------------------------------------- parts B, C, D
# iscsifs mounts afresh before every measured run here: "cold" means its cache is
# empty (qsd has none; the page cache is dropped before every run for everyone).
if part B; then
    run_theirs qsd2 "${B_JOBS[@]}"
    run_series ram2 b_rand1 b_rand32 || meta ram2_note "series incomplete: ${SERIES_FAILED:-mount failed}"
    SERIES_FAILED=
    SERIES_COLD=1 run_ours ifs2 "${B_JOBS[@]}"
fi
if part C; then
    part B || run_theirs qsd2 "${C_JOBS[@]}"
    SERIES_COLD=1 run_ours ifs2s4 "${C_JOBS[@]}"
fi
if part D; then
    run_theirs qsd4 d_par4
    SERIES_COLD=1 run_ours ifs4 d_par4
fi

# ---------------------------------------------------------------- part E
# Peak RSS of a mount with default options (cache_size 256 MiB) whatever the number of
# LUNs: 16 LUNs read in parallel (dd, 1 MiB requests), and a target with 1000 LUNs
# (mount, which probes every LUN, then every LUN read, 16 at a time).
rss_case() {             # rss_case NAME URL FILE_PREFIX COUNT PARALLEL
    local name=$1 url=$2 prefix=$3 count=$4 par=$5 mp="$WORK/mnt" t0 t1 n pid kb threads
    log "RSS case $name: mounting $url"
    mkdir -p "$mp"
    t0=$(date +%s.%N)
    if ! timeout 600 "${SRV[@]}" "$BIN" "$url" "$mp" </dev/null >>"$WORK/iscsifs.log" 2>&1; then
        meta "e_${name}_note" "mount failed: $(tail -n 2 "$WORK/iscsifs.log" | tr '\n' ' ')"
        return 1
    fi
    t1=$(date +%s.%N)
    pid=$(find_daemon_pid "$(basename "$BIN" | cut -c1-15)" "$mp")
    CUR_SYS=ifs_e_$name CUR_MP=$mp CUR_PID=$pid
    meta "e_${name}_mount_s" "$(echo "$t1 - $t0" | bc)"
    meta "e_${name}_rss_after_mount_kb" "$(awk '/^VmHWM:/ { print $2 }' /proc/"$pid"/status)"
    for ((n = 1; n <= count; n += par)); do
        local k pids=()
        for ((k = n; k < n + par && k <= count; k++)); do
            "${CLI[@]}" dd if="$mp/$prefix$k" of=/dev/null bs=1M status=none &
            pids+=($!)
        done
        wait "${pids[@]}"
    done
    kb=$(awk '/^VmHWM:/ { print $2 }' /proc/"$pid"/status)
    threads=$(ls /proc/"$pid"/task | wc -l)
    meta "e_${name}_rss_kb" "$kb"
    meta "e_${name}_threads" "$threads"
    log "RSS case $name: peak RSS $((kb / 1024)) MiB, $threads threads"
    unmount_current 300
}
if part E && [ "$RUN_ISCSIFS" = 1 ]; then
    make_part_e_targets
    rss_case 16luns "iscsi://127.0.0.1:$PORT/$IQN16" lun 16 16
    rss_case 1000luns "iscsi://127.0.0.1:$PORT/$IQN1000" lun 1000 16
fi
[ -n "$ISCSIFS_NOTE" ] && meta iscsifs_note "$ISCSIFS_NOTE"

# ---------------------------------------------------------------- report
meta load_end "$(cut -d' ' -f1-3 /proc/loadavg)"
log "writing $OUT/results.md, results.json, bench.png"
python3 "$HERE/report.py" build "$RAW" "$OUT" || die "report failed"
