#!/bin/bash
# Proves a shrink across a target restart never wedges a LUN and answers the right
# errnos (issue 11 follow-up): (1) an fsync waiting while its write-back past the new end
# is queued in the session (the target is down, then comes back smaller, the WRITE
# fails with LBA out of range) returns EIO - not ENOSPC, and without hanging - once;
# the next fsync succeeds, a write past the new end gets ENOSPC, nothing stays dirty,
# lost_bytes counts the 1 MiB, later writes with fsync work and the unmount ends
# (exit 0: the loss was reported when it happened); (2) a partition file held open while its LUN shrinks below
# the partition's window ends at the LUN's end: a read across it is short, a read at it
# is EOF, a write past it ENOSPC, a write across it short - as on the LUN's own file.
source "$(dirname "$0")/lib.sh"
requires python3 stat sgdisk

IQN=iqn.2026-11.org.iscsifs.test:liveshrink
IMG1=$T/lun1.img
IMG2=$T/lun2.img
M=$T/mnt
MiB=1048576
tgt_start
tgt_target 1 "$IQN"
tgt_sparse "$IMG1" 128M
tgt_sparse "$IMG2" 256M
# lun2: part1 at 1-8 MiB, part2 from 10 MiB to 200 MiB
sgdisk -n 1:2048:16383 -n 2:20480:409599 "$IMG2" >/dev/null || fail "sgdisk on the image"
tgt_lun 1 1 "$IMG1"
tgt_lun 1 2 "$IMG2"
iscsifs_mount "$(tgt_url "$IQN")" "$M" \
	-o noop_interval=1,noop_timeout=2,dirty_expire=300,replacement_timeout=20,rescan_interval=0
[[ -e $M/lun2-part2 ]] || fail "no lun2-part2 after mount: $(ls "$M")"
check_eq "lun2-part2 size at mount" "$(stat -c %s "$M/lun2-part2")" $((190 * MiB))

cat >"$T/w1.py" <<'EOF'
import errno, os, sys, time
path, flag, off = sys.argv[1], sys.argv[2], int(sys.argv[3])
def err(e): return errno.errorcode.get(e.errno, str(e.errno))
fd = os.open(path, os.O_RDWR)
os.pwrite(fd, b"S" * (1 << 20), off)      # dirty in the cache, past the future end
print("written", flush=True)
while not os.path.exists(flag):
    time.sleep(0.05)
for what in ("fsync", "fsync again"):
    t = time.time()
    try:
        os.fsync(fd); r = "ok"
    except OSError as e:
        r = err(e)
    print(what, r, "%.0f s" % (time.time() - t), flush=True)
try:
    os.pwrite(fd, b"E" * 4096, off); print("write past the end ok", flush=True)
except OSError as e:
    print("write past the end", err(e), flush=True)
os.close(fd)
EOF
cat >"$T/w2.py" <<'EOF'
import errno, os, sys, time
path, flag = sys.argv[1], sys.argv[2]
M = 1 << 20
def err(e): return errno.errorcode.get(e.errno, str(e.errno))
fd = os.open(path, os.O_RDWR)
print("open", flush=True)
while not os.path.exists(flag):
    time.sleep(0.05)
def do(what, f):
    try: print(what, f(), flush=True)
    except OSError as e: print(what, err(e), flush=True)
do("size", lambda: os.fstat(fd).st_size)
do("read 2M at 9M", lambda: len(os.pread(fd, 2 * M, 9 * M)))
do("read at 10M", lambda: len(os.pread(fd, 4096, 10 * M)))
do("read at 12M", lambda: len(os.pread(fd, 4096, 12 * M)))
do("write at 12M", lambda: os.pwrite(fd, b"P" * 4096, 12 * M))
do("write at 10M", lambda: os.pwrite(fd, b"P" * 4096, 10 * M))
do("write 1M at 9.5M", lambda: os.pwrite(fd, b"Q" * M, 9 * M + M // 2))
os.close(fd)
EOF
python3 "$T/w1.py" "$M/lun1" "$T/flag1" $((100 * MiB)) >"$T/w1.out" 2>&1 &
W1=$!
track_pid $W1
python3 "$T/w2.py" "$M/lun2-part2" "$T/flag2" >"$T/w2.out" 2>&1 &
W2=$!
track_pid $W2
wait_for 20 eval 'grep -q written "$T/w1.out" && grep -q open "$T/w2.out"' ||
	fail "the writers did not start: $(cat "$T/w1.out" "$T/w2.out")"

# The target dies; the fsync queues the write-back of 1 MiB at 100 MiB in the session;
# the target comes back with lun1 at 32 MiB and lun2 at 20 MiB.
tgt_kill9
touch "$T/flag1"
sleep 2
truncate -s 32M "$IMG1"
truncate -s 20M "$IMG2"
tgt_restart
size_is() { [[ $(stat -c %s "$M/$1") == "$2" ]]; }
wait_for 40 size_is lun1 $((32 * MiB)) || fail "lun1 is $(stat -c %s "$M/lun1") bytes 40 s after the restart"
wait_for 20 size_is lun2 $((20 * MiB)) || fail "lun2 is $(stat -c %s "$M/lun2") bytes 40 s after the restart"

# (1) bounded: replacement_timeout (20) + cmd_timeout (30) after it was issued, and more
wait_for 90 eval '! pid_alive $W1' || fail "the fsync still waits 90 s after the target came back: $(cat "$T/w1.out")"
out1=$(cat "$T/w1.out")
log "lun1 writer: $(tr '\n' ';' <<<"$out1")"
grep -q '^fsync EIO' <<<"$out1" || fail "the fsync after the shrink did not answer EIO: $out1"
grep -q '^fsync again ok' <<<"$out1" || fail "the loss was not reported exactly once: $out1"
grep -q '^write past the end ENOSPC' <<<"$out1" || fail "a write past the new end did not answer ENOSPC: $out1"
stats() { python3 -c 'import json,sys; l=[x for x in json.load(open(sys.argv[1]))["luns"] if x["file"] == "lun1"][0]; print(l["cache"]["dirty_bytes"], l["cache"]["lost_bytes"])' "$M/.iscsifs/stats.json"; }
check_eq "lun1 dirty_bytes lost_bytes" "$(stats)" "0 $MiB"
run_bounded 60 dd if=/dev/zero of="$M/lun1" bs=1M count=1 conv=notrunc,fsync status=none ||
	fail "a write with fsync before the new end failed or hung after the shrink"
check_eq "lun1's backing file keeps its size" "$(stat -c %s "$IMG1")" $((32 * MiB))

# (2) the partition file held open across the shrink
touch "$T/flag2"
wait_for 60 eval '! pid_alive $W2' || fail "the partition writer hangs: $(cat "$T/w2.out")"
out2=$(cat "$T/w2.out")
log "lun2-part2 holder: $(tr '\n' ';' <<<"$out2")"
check_eq "lun2-part2 across the shrink (window 10 MiB now)" "$(tr '\n' ';' <<<"$out2")" \
	"open;size $((10 * MiB));read 2M at 9M $MiB;read at 10M 0;read at 12M 0;write at 12M ENOSPC;write at 10M ENOSPC;write 1M at 9.5M $((MiB / 2));"

# the unmount ends at once (the loss was reported when it happened: exit 0)
grep -q 'are lost' "$DAEMON_LOG" || fail "the lost dirty data is not logged"
iscsifs_umount_ok "$M"
pass "a shrink with a write-back in flight past the end: EIO once, no hang; partition windows end at the LUN's end"
