#!/bin/bash
# Proves a LUN's size follows the target across a re-login, without a remount (issue
# 11): LUN 1's backing file grows from 64 to 128 MiB while tgtd is down, and after the
# re-login lun1 is 128 MiB (stat), logged with the old and the new size, and the grown
# part reads and writes; then it shrinks to 32 MiB while 1 MiB written at 48 MiB is
# still dirty in the cache: lun1 becomes 32 MiB, the lost dirty data is logged and
# reported as EIO at the next fsync of the file that wrote it (once), I/O past the new
# end fails, nothing past 32 MiB reaches the target (the backing file keeps its size
# and bytes), and the data before the end is intact.
source "$(dirname "$0")/lib.sh"
requires python3 stat sha256sum

IQN=iqn.2026-11.org.iscsifs.test:livecap
IMG=$T/lun1.img
M=$T/mnt
MiB=1048576
tgt_start
tgt_target 1 "$IQN"
tgt_sparse "$IMG" 64M
fill_random "$IMG" $((4 * MiB))
tgt_lun 1 1 "$IMG"
# dirty data stays in the cache for the test's length unless fsync'ed
iscsifs_mount "$(tgt_url "$IQN")" "$M" \
	-o noop_interval=1,noop_timeout=2,dirty_expire=300,replacement_timeout=60

size_is() { [[ $(stat -c %s "$M/lun1") == "$1" ]]; }

check_eq "size at mount" "$(stat -c %s "$M/lun1")" $((64 * MiB))

# --- grown while the target is down
tgt_stop
truncate -s 128M "$IMG"
tgt_restart
wait_for 30 size_is $((128 * MiB)) ||
	fail "lun1 is $(stat -c %s "$M/lun1") bytes 30 s after tgtd came back with 128 MiB; want $((128 * MiB))"
grep -q "capacity grew after re-login from $((64 * MiB)) to $((128 * MiB)) bytes" "$DAEMON_LOG" ||
	fail "the growth is not logged with old and new size"
log "grown: lun1 is 128 MiB after the re-login, logged"
# the grown part works, and lands in the backing file
head -c "$MiB" /dev/urandom >"$T/chunk"
dd if="$T/chunk" of="$M/lun1" bs=1M seek=100 conv=notrunc,fsync status=none ||
	fail "writing at 100 MiB of the grown lun1 failed"
check_cmp "$T/chunk" "$IMG" "$MiB" 0 $((100 * MiB))
dd if="$M/lun1" of="$T/back" bs=1M skip=100 count=1 iflag=direct status=none
check_cmp "$T/chunk" "$T/back"

# --- shrunk while the target is down, with dirty data past the new end
cat >"$T/hold.py" <<'EOF'
import errno, os, sys, time
path, flag, off = sys.argv[1], sys.argv[2], int(sys.argv[3])
fd = os.open(path, os.O_RDWR)
os.pwrite(fd, b"D" * (1 << 20), off)      # dirty in the cache (dirty_expire=300)
print("written", flush=True)
while not os.path.exists(flag):
    time.sleep(0.1)
for what in ("fsync", "fsync again"):
    try:
        os.fsync(fd)
        print(what, "ok", flush=True)
    except OSError as e:
        print(what, errno.errorcode.get(e.errno, e.errno), flush=True)
try:
    os.pwrite(fd, b"E" * 4096, off)
    print("write past the end ok", flush=True)
except OSError as e:
    print("write past the end", errno.errorcode.get(e.errno, e.errno), flush=True)
os.close(fd)
EOF
python3 "$T/hold.py" "$M/lun1" "$T/flag" $((48 * MiB)) >"$T/hold.out" 2>&1 &
HOLD=$!
track_pid $HOLD
wait_for 20 grep -q written "$T/hold.out" || fail "the writer did not write: $(cat "$T/hold.out")"
tgt_stop
truncate -s 32M "$IMG"
sum_before=$(sha256sum <"$IMG")
tgt_restart
wait_for 30 size_is $((32 * MiB)) ||
	fail "lun1 is $(stat -c %s "$M/lun1") bytes 30 s after tgtd came back with 32 MiB; want $((32 * MiB))"
grep -q "capacity shrank after re-login from $((128 * MiB)) to $((32 * MiB)) bytes" "$DAEMON_LOG" ||
	fail "the shrink is not logged with old and new size"
touch "$T/flag"
wait "$HOLD" || true
out=$(cat "$T/hold.out")
log "writer: $(tr '\n' ';' <<<"$out")"
grep -q '^fsync EIO' <<<"$out" ||
	fail "the fsync after the shrink did not report the lost dirty data (EIO): $out"
grep -q '^fsync again ok' <<<"$out" || fail "the loss was reported more than once: $out"
grep -q '^write past the end ok' <<<"$out" && fail "a write past the new end succeeded: $out"
grep -qiE 'lost|dirty bytes past its end' "$DAEMON_LOG" || fail "the lost dirty data is not logged"
# nothing reached the target past its end, and it is unchanged
check_eq "backing file size" "$(stat -c %s "$IMG")" $((32 * MiB))
check_eq "backing file checksum" "$(sha256sum <"$IMG")" "$sum_before"
# reads: the data before the end is intact; at the end, EOF
head -c $((4 * MiB)) "$IMG" >"$T/first"
dd if="$M/lun1" of="$T/first.m" bs=1M count=4 iflag=direct status=none
check_cmp "$T/first" "$T/first.m"
check_eq "bytes read at 40 MiB" "$(dd if="$M/lun1" bs=1M skip=40 count=1 iflag=direct status=none | wc -c)" 0
iscsifs_umount_ok "$M"
pass "capacity follows the target: grown and shrunk across re-logins, losses reported"
