#!/bin/bash
# Proves a LUN that turns read-only or goes offline at runtime gives errors, never a
# hang or a silent loss: after `readonly=1`, writes fail with EROFS (at write() with
# cache=writethrough; at fsync with cache=writeback, whose data stays dirty and reaches
# the target once the LUN is writable again), rejected data never reads back, reads
# stay right; after `online=0`, reads and writes fail (ENOMEDIUM) within a bound, and
# work again after `online=1`.
source "$(dirname "$0")/lib.sh"
requires python3

IQN=iqn.2026-11.org.iscsifs.test:readonly
tgt_start
tgt_target 1 "$IQN"
LUN=$T/lun1.img
tgt_sparse "$LUN" 16M
tgt_lun 1 1 "$LUN"
fill_random "$LUN"
M=$T/mnt

# io.py STEP...: each step is OP:OFF:LEN (OP = read, write, fsync; OFF and LEN in
# bytes; write data is byte 'W'), run in order on one descriptor of $M/lun1 that stays
# open throughout; prints one line per step: "OP ok SECS" or "OP ERRNONAME SECS". A read
# is compared with the backing file ("read DIFF" when it differs).
cat >"$T/io.py" <<'EOF'
import errno, os, sys, time
path, backing = sys.argv[1], sys.argv[2]
flags = os.O_RDWR
fd = os.open(path, flags)
for step in sys.argv[3:]:
    op, off, n = step.split(":")
    off, n = int(off), int(n)
    t0 = time.monotonic()
    try:
        if op == "read":
            data = os.pread(fd, n, off)
            with open(backing, "rb") as f:
                f.seek(off)
                if f.read(n) != data:
                    print("read DIFF %.2f" % (time.monotonic() - t0), flush=True)
                    continue
        elif op == "write":
            os.pwrite(fd, b"W" * n, off)
        else:
            os.fsync(fd)
        print("%s ok %.2f" % (op, time.monotonic() - t0), flush=True)
    except OSError as e:
        print("%s %s %.2f" % (op, errno.errorcode.get(e.errno, e.errno), time.monotonic() - t0),
              flush=True)
try:
    os.close(fd)
except OSError:
    pass
EOF

# expect LINE... -- STEP...: run io.py with the steps (bounded) and compare its output,
# line by line (without the times), with the expected "OP RESULT" lines.
expect()
{
	local -a want=() steps=()
	while [[ $1 != -- ]]; do want+=("$1"); shift; done
	shift
	steps=("$@")
	local out got
	out=$(run_bounded 60 python3 "$T/io.py" "$M/lun1" "$LUN" "${steps[@]}") ||
		fail "io.py ${steps[*]} did not finish: $out"
	got=$(awk '{ print $1, $2 }' <<<"$out")
	[[ $got == "$(printf '%s\n' "${want[@]}")" ]] ||
		fail "steps ${steps[*]}: got [$(tr '\n' ';' <<<"$got")], want [$(IFS=';'; echo "${want[*]}")]"
	LAST_OUT=$out
}

# backing_is OFF LEN CHAR|-: the backing file holds LEN bytes CHAR at OFF ('-': not all
# of them are CHAR, i.e. the write did not land).
backing_is()
{
	local n
	n=$(dd if="$LUN" bs=1 skip="$1" count="$2" status=none | tr -d "${3#-}" | wc -c)
	if [[ $3 == - ]]; then
		((n > 0)) || fail "the backing file at $1 has the rejected data"
	elif ((n != 0)); then
		fail "the backing file at $1 lacks $(( n )) of $2 bytes written there"
	fi
}

lun_stat()
{
	python3 -c 'import json,sys; d=json.load(open(sys.argv[1]))["luns"][0]; print(d[sys.argv[2]][sys.argv[3]])' \
		"$M/.iscsifs/stats.json" "$1" "$2"
}

# --- 1. write-through: EROFS at write(), nothing kept
iscsifs_mount "$(tgt_url "$IQN" 1)" "$M" -o cache=writethrough
expect "write ok" "read ok" -- write:4096:4096 read:0:65536
backing_is 4096 4096 W
tgt_readonly 1 1 1
expect "write EROFS" "read ok" "read ok" -- write:$((1 << 20)):10000 read:$((1 << 20)):10000 read:0:$((2 << 20))
backing_is $((1 << 20)) 10000 -
(($(lun_stat cache write_errors) >= 1)) || fail "cache.write_errors not counted in stats.json"
tgt_readonly 1 1 0
expect "write ok" "read ok" -- write:$((1 << 20)):10000 read:$((1 << 20)):10000
backing_is $((1 << 20)) 10000 W
iscsifs_umount_ok "$M"
pass "cache=writethrough: readonly=1 -> write() fails with EROFS, the data is not kept, reads right; writable again after readonly=0"

# --- 2. write-back: write() succeeds into the cache, fsync reports EROFS; the data is
# kept dirty and reaches the target once the LUN is writable again.
fill_random "$LUN"
iscsifs_mount "$(tgt_url "$IQN" 1)" "$M" -o cache=writeback,dirty_expire=600
tgt_readonly 1 1 1
expect "write ok" "fsync EROFS" "read ok" -- write:$((3 << 20)):70000 fsync:0:0 read:0:$((2 << 20))
backing_is $((3 << 20)) 70000 -
tgt_readonly 1 1 0
# The failed write-back is retried with backoff: fsync succeeds within a bound.
start=$SECONDS
until out=$(run_bounded 30 python3 "$T/io.py" "$M/lun1" "$LUN" fsync:0:0) && [[ $out == "fsync ok"* ]]; do
	((SECONDS - start < 20)) || fail "fsync still fails 20 s after readonly=0: $out"
	sleep 0.5
done
backing_is $((3 << 20)) 70000 W
iscsifs_umount_ok "$M"
grep -q 'are lost' "$DAEMON_LOG" && fail "the daemon dropped dirty data: $(grep 'are lost' "$DAEMON_LOG")"
pass "cache=writeback: readonly=1 -> fsync fails with EROFS; after readonly=0 the same data reaches the target ($((SECONDS - start)) s)"

# --- 3. offline: errors within a bound, then back. tgt 1.0.85 ignores online=0 for a
# non-removable LUN (reads still succeed: checked by hand), so the LUN is made
# removable first; then every READ/WRITE gets NOT READY, MEDIUM NOT PRESENT.
iscsifs_mount "$(tgt_url "$IQN" 1)" "$M" -o cache=none
expect "read ok" -- read:$((5 << 20)):65536
tgt_adm --op update --mode logicalunit --tid 1 --lun 1 --params removable=1,online=0
expect "read ENOMEDIUM" "write ENOMEDIUM" "fsync ENOMEDIUM" -- read:$((6 << 20)):65536 write:$((6 << 20)):4096 fsync:0:0
awk '$3 > 10 { exit 1 }' <<<"$LAST_OUT" || fail "an offline LUN took more than 10 s to fail: $LAST_OUT"
pid_alive "$ISCSIFS_PID" || fail "the daemon died when the LUN went offline"
backing_is $((6 << 20)) 4096 -
tgt_adm --op update --mode logicalunit --tid 1 --lun 1 --params online=1
expect "read ok" "write ok" "read ok" -- read:$((6 << 20)):65536 write:$((6 << 20)):4096 read:$((6 << 20)):4096
backing_is $((6 << 20)) 4096 W
iscsifs_umount_ok "$M"
pass "online=0 -> read, write and fsync fail with ENOMEDIUM at once ($(awk '{ printf "%s ", $3 }' <<<"$LAST_OUT")s), no hang; online=1 -> I/O works again"
