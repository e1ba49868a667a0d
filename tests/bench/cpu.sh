#!/usr/bin/env bash
# CPU cost per I/O of iscsifs and qemu-storage-daemon on the beyond-the-cache jobs
# (B1 B2 B3 B6 of run.sh): daemon CPU time (utime+stime of every thread) and context
# switches (voluntary + involuntary, all threads) divided by the I/Os fio completed.
# On a shared machine these are far steadier than IOPS. A measurement tool, asserts
# nothing.
#
#   tests/bench/cpu.sh [--secs N] [--jobs "B1 B2 B3 B5 B6"] [--only iscsifs|qsd|all]
#                      [--opts MOUNTOPTS] [--no-pin] [--threads] [--stats] [--strace]
#                      [--perf DIR]
#
#   --secs N     fio runtime per job (default 10)
#   --jobs LIST  any of B1 B2 B3 B5 B6, run.sh's jobs of the same names (default B1 B2 B3 B6)
#   --only WHAT  one system only
#   --opts O     iscsifs mount options
#   --no-pin     no taskset (default as run.sh: fio on CPU 0, tgtd and the daemon on the last)
#   --threads    also CPU and context switches per I/O of each daemon thread
#   --stats      also iscsifs's .iscsifs/stats.json at the end of each job
#   --strace     also system calls per I/O (strace -c -f; it slows the daemon down a lot)
#   --perf DIR   perf record -g of the daemon into DIR/SYSTEM-JOB.data (PERFARGS adds
#                perf options, e.g. PERFARGS="-e sched:sched_switch")
#
# Columns: IOPS (indicative only), daemon CPU us per I/O, context switches per I/O, the
# daemon's CPU share, and tgtd's CPU us per I/O (on the pinned placement tgtd shares
# the daemon's CPU, so how a daemon sends its commands changes tgtd's cost too).
# The LUN is a 2 GiB file on /dev/shm, allocated up front (written or not, every system
# sees the same memory), iscsifs mounted afresh for every job with default options.
# Needs root. Everything lives in one /dev/shm/iscsifs-cpu.XXXXXX directory, removed
# with everything it started by the EXIT trap.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
BIN=${ISCSIFS:-$REPO/build/iscsifs}
IQN=iqn.2026-11.org.iscsifs:cpu
SECS=10
JOBS="B1 B2 B3 B6"
ONLY=all
PERFDIR=
PIN=1
OPTS=
THREADS=0
STRACE=0
STATS=0

while [ $# -gt 0 ]; do
    case "$1" in
        --secs) SECS=$2; shift ;;
        --jobs) JOBS=$2; shift ;;
        --only) ONLY=$2; shift ;;
        --perf) PERFDIR=$2; shift ;;
        --no-pin) PIN=0 ;;
        --opts) OPTS=$2; shift ;;
        --threads) THREADS=1 ;;
        --strace) STRACE=1 ;;
        --stats) STATS=1 ;;
        *) sed -n '2,/^set -uo/p' "$0" | sed '$d' >&2; exit 2 ;;
    esac
    shift
done
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }

declare -A FIO=(
    [B1]="--bs=4k --rw=randread --ioengine=psync"
    [B2]="--bs=4k --rw=randread --ioengine=libaio --iodepth=32 --direct=1"
    [B3]="--bs=4k --rw=randwrite --ioengine=libaio --iodepth=32 --direct=1"
    [B5]="--bs=4k --rw=randwrite --ioengine=psync"
    [B6]="--bs=1M --rw=write --ioengine=psync"
)
CLI=() SRV=()
if [ "$PIN" = 1 ]; then CLI=(taskset -c 0) SRV=(taskset -c $(($(nproc) - 1))); fi

WORK=$(mktemp -d /dev/shm/iscsifs-cpu.XXXXXX)
TGTD_PID= DPID= STARTED=()
cleanup() {
    set +e
    for m in "$WORK/mnt" "$WORK/qsd.img"; do
        grep -q " $m " /proc/mounts && fusermount3 -u "$m" 2>/dev/null
    done
    for p in "${STARTED[@]}"; do kill "$p" 2>/dev/null; done
    sleep 0.5
    for p in "${STARTED[@]}"; do kill -9 "$p" 2>/dev/null; done
    if [ -n "$TGTD_PID" ]; then
        tgtadm -C "$CP" --op delete --mode system >/dev/null 2>&1
        kill -9 "$TGTD_PID" 2>/dev/null
        rm -f "/var/run/tgtd/socket.$CP" "/var/run/tgtd/socket.$CP.lock"
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
for CP in $(seq 20000 20999 | shuf); do
    [ -e "/var/run/tgtd/socket.$CP" ] || [ -e "/var/run/tgtd/socket.$CP.lock" ] || break
done
fallocate -l 2G "$WORK/lun.img"   # allocated: tmpfs page allocation is not charged to whichever system writes first
"${SRV[@]}" tgtd -f --iscsi "portal=127.0.0.1:$PORT" --control-port "$CP" </dev/null >"$WORK/tgtd.log" 2>&1 &
TGTD_PID=$!
disown "$TGTD_PID"    # no "Killed" line when the EXIT trap ends it
STARTED+=("$TGTD_PID")
for _ in $(seq 50); do tgtadm -C "$CP" --lld iscsi --op show --mode sys >/dev/null 2>&1 && break; sleep 0.1; done
tgtadm -C "$CP" --lld iscsi --op new --mode target --tid 1 -T "$IQN" &&
tgtadm -C "$CP" --lld iscsi --op new --mode logicalunit --tid 1 --lun 1 -b "$WORK/lun.img" &&
tgtadm -C "$CP" --lld iscsi --op bind --mode target --tid 1 -I ALL || { echo "tgtadm failed" >&2; exit 1; }

# counters of every thread of $1: "cpu_ticks ctxsw"
counters() {
    local pid=$1 t ticks=0 cs=0 a b
    read -r -a f < <(sed 's/^.*) //' "/proc/$pid/stat")
    ticks=$((f[11] + f[12]))   # utime stime (fields 14 15), incl. dead threads
    for t in /proc/"$pid"/task/*; do
        a=$(awk '/^voluntary_ctxt/ {v=$2} /^nonvoluntary_ctxt/ {n=$2} END {print v+n}' "$t/status" 2>/dev/null)
        cs=$((cs + ${a:-0}))
    done
    echo "$ticks $cs"
}
HZ=$(getconf CLK_TCK)
# per thread: "tid comm ticks ctxsw" (for --threads)
thread_counters() {
    local t
    for t in /proc/"$1"/task/*; do
        echo "${t##*/} $(cat "$t/comm" | tr ' ' _) $(sed 's/^.*) //' "$t/stat" | awk '{print $12 + $13}') $(awk '/^voluntary_ctxt/ {v=$2} /^nonvoluntary_ctxt/ {n=$2} END {print v+n}' "$t/status")"
    done 2>/dev/null
}

mount_sys() {
    case "$1" in
        iscsifs)
            mkdir -p "$WORK/mnt"
            "${SRV[@]}" "$BIN" ${OPTS:+-o "$OPTS"} "iscsi://127.0.0.1:$PORT/$IQN/1" "$WORK/mnt" 2>>"$WORK/iscsifs.log" || return 1
            FILE=$WORK/mnt/lun1
            for _ in $(seq 100); do [ -e "$FILE" ] && break; sleep 0.1; done
            DPID=
            for p in $(pgrep -f -- "$WORK/mnt"); do
                [ "$(cat /proc/"$p"/comm 2>/dev/null)" = iscsifs ] && DPID=$p
            done
            [ -n "$DPID" ] || { echo "iscsifs daemon not found" >&2; return 1; }
            ;;
        qsd)
            : >"$WORK/qsd.img"
            "${SRV[@]}" qemu-storage-daemon --blockdev "driver=iscsi,node-name=n0,transport=tcp,portal=127.0.0.1:$PORT,target=$IQN,lun=1,cache.direct=on" \
                --export "type=fuse,id=e0,node-name=n0,mountpoint=$WORK/qsd.img,writable=on" </dev/null >>"$WORK/qsd.log" 2>&1 &
            DPID=$!
            STARTED+=("$DPID")
            for _ in $(seq 100); do grep -q " $WORK/qsd.img " /proc/mounts && break; sleep 0.1; done
            FILE=$WORK/qsd.img
            ;;
    esac
}
unmount_sys() {
    case "$1" in
        iscsifs) fusermount3 -u "$WORK/mnt"; for _ in $(seq 300); do kill -0 "$DPID" 2>/dev/null || break; sleep 0.1; done ;;
        qsd) fusermount3 -u "$WORK/qsd.img" 2>/dev/null; kill "$DPID"; wait "$DPID" 2>/dev/null ;;
    esac
}

printf '%-8s %-4s %9s %10s %9s %9s %11s\n' system job IOPS cpu-us/IO ctxsw/IO cpu% tgtd-us/IO
for sys in iscsifs qsd; do
    [ "$ONLY" = all ] || [ "$ONLY" = "$sys" ] || continue
    for job in $JOBS; do
        mount_sys "$sys" || { echo "mount $sys failed" >&2; exit 1; }
        sync; echo 3 >/proc/sys/vm/drop_caches
        read -r t0 c0 < <(counters "$DPID")
        read -r g0 _ < <(counters "$TGTD_PID")
        [ "$THREADS" = 1 ] && thread_counters "$DPID" >"$WORK/th0"
        s0=$(date +%s.%N)
        PP=
        if [ -n "$PERFDIR" ]; then
            mkdir -p "$PERFDIR"
            perf record ${PERFARGS:-} -g -o "$PERFDIR/$sys-$job.data" -p "$DPID" >/dev/null 2>&1 &
            PP=$!
        fi
        if [ "$STRACE" = 1 ]; then
            strace -c -f -p "$DPID" -o "$WORK/strace.txt" 2>/dev/null &
            PP=$!
        fi
        "${CLI[@]}" fio --name=j --filename="$FILE" --size=2G --time_based --runtime="$SECS" \
            ${FIO[$job]} --output-format=json >"$WORK/fio.json" 2>"$WORK/fio.err"
        read -r t1 c1 < <(counters "$DPID")
        read -r g1 _ < <(counters "$TGTD_PID")
        [ "$THREADS" = 1 ] && thread_counters "$DPID" >"$WORK/th1"
        s1=$(date +%s.%N)
        [ -n "$PP" ] && { kill -INT "$PP"; wait "$PP" 2>/dev/null; }
        if [ "$STRACE" = 1 ]; then
            n=$(python3 -c 'import json,sys; j=json.load(open(sys.argv[1]))["jobs"][0]; print(j["read"]["total_ios"]+j["write"]["total_ios"])' "$WORK/fio.json")
            awk -v n="$n" '$1 ~ /^[0-9.]+$/ && NF >= 5 { printf "    %-16s calls/IO %6.2f\n", $NF, $4 / n }' "$WORK/strace.txt" | sort -k3 -nr | head -12
        fi
        ios=$(python3 -c 'import json,sys; j=json.load(open(sys.argv[1]))["jobs"][0]; print(j["read"]["total_ios"]+j["write"]["total_ios"], j["read"]["iops"]+j["write"]["iops"])' "$WORK/fio.json")
        set -- $ios
        awk -v s="$sys" -v j="$job" -v n="$1" -v iops="$2" -v dt=$((t1 - t0)) -v dc=$((c1 - c0)) -v hz="$HZ" -v w="$(echo "$s1 - $s0" | bc)" -v dg=$((g1 - g0)) \
            'BEGIN { printf "%-8s %-4s %9.0f %10.1f %9.2f %8.0f%% %11.1f\n", s, j, iops, dt / hz * 1e6 / n, dc / n, dt / hz / w * 100, dg / hz * 1e6 / n }'
        if [ "$STATS" = 1 ] && [ "$sys" = iscsifs ]; then
            cp "$WORK/mnt/.iscsifs/stats.json" "$WORK/stats.json" 2>/dev/null && echo "    stats: $(python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1])))[:1500])' "$WORK/stats.json")"
        fi
        if [ "$THREADS" = 1 ]; then
            awk -v n="$1" -v hz="$HZ" 'NR == FNR { t[$1] = $3; c[$1] = $4; next }
                { printf "    %-7s %-16s cpu-us/IO %7.1f  ctxsw/IO %6.2f\n", $1, $2, ($3 - t[$1]) / hz * 1e6 / n, ($4 - c[$1]) / n }' "$WORK/th0" "$WORK/th1"
        fi
        unmount_sys "$sys"
    done
done
