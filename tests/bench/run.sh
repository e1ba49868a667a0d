#!/usr/bin/env bash
# iscsifs benchmark: fio side by side on qemu-storage-daemon's FUSE export and on iscsifs,
# both logged in to the same tgt LUN, plus libiscsi's iscsi-perf as the transport ceiling.
# A measurement script, not a test: it asserts nothing; goals are read from its table.
# See tests/bench/README.md.
#
#   tests/bench/run.sh [--quick] [--out DIR] [--only qsd|iscsifs|all] [--cold] [--no-pin] [--no-build]
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

usage() {
    cat <<EOF
usage: $0 [--quick] [--out DIR] [--only qsd|iscsifs|all] [--cold] [--no-pin] [--no-build]
  --quick       3 s per job instead of 6 s
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
        --no-pin) PIN=0 ;;
        --no-build) BUILD=0 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
    shift
done
case "$ONLY" in qsd|iscsifs|all) ;; *) echo "--only takes qsd, iscsifs or all" >&2; exit 2 ;; esac

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
CUR_SYS='' CUR_MP='' CUR_PID='' CUR_FILE=''
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

# ---------------------------------------------------------------- iscsi-perf
run_iscsi_perf() {       # run_iscsi_perf NAME BYTES MAXQ [-r]
    local name=$1 bytes=$2 maxq=$3; shift 3
    log "iscsi-perf $name"
    timeout -k 5 $((PERF_SECS + 20)) "${CLI[@]}" iscsi-perf -t "$PERF_SECS" -b $((bytes / LBS)) -m "$maxq" "$@" "$URL" \
        </dev/null 2>&1 | tr '\r' '\n' >"$RAW/iscsi-perf-$name.txt"
}
run_iscsi_perf rand4k-qd1 4096 1 -r
run_iscsi_perf rand4k-qd32 4096 32 -r
run_iscsi_perf seq1m-qd8 1048576 8

# ---------------------------------------------------------------- mounts
find_daemon_pid() {      # find_daemon_pid COMM_PREFIX MOUNTPOINT
    local pid
    for pid in $(pgrep -f -- "$2" 2>/dev/null); do
        [ "$pid" = $$ ] && continue
        case "$(cat /proc/"$pid"/comm 2>/dev/null)" in "$1"*) echo "$pid"; return 0 ;; esac
    done
    return 1
}

start_qsd() {            # start_qsd SYS MOUNTFILE BLOCKDEV
    local sys=$1 mp=$2 blockdev=$3 pid
    rm -f "$mp"; : >"$mp"      # a FUSE export's mountpoint is a regular file
    "${SRV[@]}" qemu-storage-daemon --blockdev "$blockdev" \
        --export "type=fuse,id=e0,node-name=n0,mountpoint=$mp,writable=on" \
        </dev/null >>"$WORK/$sys.log" 2>&1 &
    pid=$!
    STARTED_PIDS+=("$pid")
    if ! wait_until 20 is_mounted "$mp"; then
        SERIES_FAILED="qemu-storage-daemon ($sys) did not mount: $(tail -n 3 "$WORK/$sys.log" | tr '\n' ' ')"
        log "$SERIES_FAILED"
        stop_pid "$pid" 5
        return 1
    fi
    CUR_SYS=$sys CUR_MP=$mp CUR_FILE=$mp
    CUR_PID=$(find_daemon_pid qemu-storage-d "$mp") || CUR_PID=$pid
}

mount_sys() {            # mount_sys SYS: fresh mount; sets CUR_*
    local sys=$1 mp rc
    case "$sys" in
        qsd)
            start_qsd qsd "$WORK/qsd.img" \
                "driver=iscsi,node-name=n0,transport=tcp,portal=127.0.0.1:$PORT,target=$IQN,lun=1,cache.direct=on" ;;
        ramref)
            start_qsd ramref "$WORK/ramref.img" \
                "driver=file,node-name=n0,filename=$WORK/ram.img,cache.direct=off,aio=threads" ;;
        iscsifs)
            mp="$WORK/mnt"
            mkdir -p "$mp"
            timeout 60 "${SRV[@]}" "$BIN" "$URL" "$mp" </dev/null >>"$WORK/iscsifs.log" 2>&1
            rc=$?
            if [ $rc != 0 ]; then
                SERIES_FAILED="the mount command '$BIN $URL $mp' exited $rc: $(tail -n 3 "$WORK/iscsifs.log" | tr '\n' ' ')"
                log "$SERIES_FAILED"
                CUR_SYS=iscsifs CUR_MP=$mp CUR_PID=$(find_daemon_pid "$(basename "$BIN" | cut -c1-15)" "$mp")
                unmount_current 10
                return 1
            fi
            CUR_SYS=iscsifs CUR_MP=$mp CUR_FILE="$mp/lun1"
            CUR_PID=$(find_daemon_pid "$(basename "$BIN" | cut -c1-15)" "$mp") || CUR_PID=
            if ! wait_until 30 test -e "$CUR_FILE"; then
                SERIES_FAILED="iscsifs mounted but $CUR_FILE did not appear within 30 s"
                log "$SERIES_FAILED"
                unmount_current 30
                return 1
            fi
            [ -n "$CUR_PID" ] || log "warning: iscsifs daemon PID not found (no RSS figure)" ;;
    esac
}

unmount_current() {      # unmount_current GRACE
    [ -n "$CUR_MP" ] || return 0
    record_rss
    if [ "$CUR_SYS" = iscsifs ] && [ -e "$CUR_MP/.iscsifs/stats.json" ]; then
        STATS_N=$((STATS_N + 1))    # the daemon's own counters (hits, misses, ...) per mount
        timeout 5 cat "$CUR_MP/.iscsifs/stats.json" >"$RAW/iscsifs-stats-$STATS_N.json" 2>/dev/null
    fi
    if [ "$CUR_SYS" != iscsifs ] && [ -n "$CUR_PID" ] && pid_alive "$CUR_PID"; then
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
)

fio_once() {             # fio_once OUTJSON JOBID FILE
    local out=$1 job=$2 file=$3 rc
    drop_caches
    # shellcheck disable=SC2086  # JOB_ARGS holds several words on purpose
    timeout -k 10 "$FIO_TIMEOUT" "${CLI[@]}" fio --name="$job" --filename="$file" --ioengine=psync \
        --offset=0 --time_based --runtime="${HALF_MS}ms" --ramp_time="$RAMP" \
        --group_reporting --output-format=json ${JOB_ARGS[$job]} \
        </dev/null >"$out" 2>"${out%.json}.err"
    rc=$?
    [ $rc = 0 ] || log "fio $job on $CUR_SYS exited $rc: $(tail -n 2 "${out%.json}.err" | tr '\n' ' ')"
    return $rc
}

daemon_ok() {
    is_mounted "$CUR_MP" && { [ -z "$CUR_PID" ] || pid_alive "$CUR_PID"; }
}

SERIES_FAILED=
run_job() {              # run_job SYS JOBID
    local sys=$1 job=$2 n s
    if [ "$job" = hotread ]; then
        [ "$COLD" = 1 ] && { unmount_current; mount_sys "$sys" || return 1; }
        log "$sys $job: warm-up run (not measured)"
        fio_once "$RAW/$sys-$job-warmup.json" "$job" "$CUR_FILE"
    fi
    for n in 1 2; do
        if [ "$COLD" = 1 ] && [ "$job" != hotread ]; then
            unmount_current; mount_sys "$sys" || return 1
        fi
        fio_once "$RAW/$sys-$job-$n.json" "$job" "$CUR_FILE"
        daemon_ok || { SERIES_FAILED="$sys died or lost its mount during $job"; return 1; }
    done
    s=$(python3 "$HERE/report.py" spread "$RAW/$sys-$job-1.json" "$RAW/$sys-$job-2.json")
    case $? in
        0) log "$sys $job: halves within 25% (spread $s)" ;;
        1) log "$sys $job: halves differ by $s > 0.25: third run, median of three"
           if [ "$COLD" = 1 ] && [ "$job" != hotread ]; then
               unmount_current; mount_sys "$sys" || return 1
           fi
           fio_once "$RAW/$sys-$job-3.json" "$job" "$CUR_FILE"
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

if [ "$ONLY" != iscsifs ]; then
    run_series qsd "${JOB_IDS[@]}" || meta qsd_note "series incomplete: ${SERIES_FAILED:-mount failed}"
    SERIES_FAILED=
fi

# RAM-backed FUSE reference for the hot-read job: the same FUSE export code, over a
# /dev/shm file instead of iSCSI.
truncate -s 256M "$WORK/ram.img"
dd if=/dev/urandom of="$WORK/ram.img" bs=1M count=64 conv=notrunc status=none
run_series ramref hotread || meta ramref_note "series incomplete: ${SERIES_FAILED:-mount failed}"
SERIES_FAILED=
rm -f "$WORK/ram.img"

if [ "$RUN_ISCSIFS" = 1 ]; then
    if ! run_series iscsifs "${JOB_IDS[@]}"; then
        ISCSIFS_NOTE="series incomplete: ${SERIES_FAILED:-mount failed}"
        [ -s "$WORK/iscsifs.log" ] && cp "$WORK/iscsifs.log" "$OUT/iscsifs.log" && ISCSIFS_NOTE+=" Log: out/iscsifs.log."
    fi
fi
[ -n "$ISCSIFS_NOTE" ] && meta iscsifs_note "$ISCSIFS_NOTE"

# ---------------------------------------------------------------- report
meta load_end "$(cut -d' ' -f1-3 /proc/loadavg)"
log "writing $OUT/results.md, results.json, bench.png"
python3 "$HERE/report.py" build "$RAW" "$OUT" || die "report failed"
