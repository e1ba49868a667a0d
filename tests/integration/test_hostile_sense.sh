#!/bin/bash
# Proves CHECK CONDITION is never success (issue 9 §1, §5): a WRITE or READ answered
# CHECK CONDITION with sense key NO SENSE, with unparseable sense (response code 0),
# with sense shorter than its length field, or with no sense at all fails with EIO
# within the time budget, nothing unwritten is acknowledged, nothing stale is returned
# or cached (read again once the target behaves), and a READ CAPACITY answered with an
# empty CHECK CONDITION never gives a LUN of "block size 0".
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_badtarget.sh"
requires python3

M=$T/mnt
IMG=$T/lun1.img
ORIG=$T/lun1.orig
LUN_BYTES=$((64 << 20))
CASES=${HOSTILE_CASES:-nosense badsense sense-short sense-empty}

new_lun()
{
	rm -f "$IMG"
	truncate -s "$LUN_BYTES" "$IMG"
	fill_random "$IMG"
	cp "$IMG" "$ORIG"
}

# Expected log lines once fixed (lun.c logs the command, LBA and the raw sense), e.g.
#   "WRITE(10) of ... LUN 1 at LBA 16384 failed: CHECK CONDITION, sense key NO SENSE (raw sense 70 00 00 ...)"
#   "READ(10) ... CHECK CONDITION with unusable sense (response code 0x00)"
#   "... CHECK CONDITION with sense data shorter than its length field (4 of 18 bytes)"
#   "... CHECK CONDITION without sense data"
# The check stays loose: the word "sense" or "check condition" in the daemon's log.
LOG_RE='sense|check condition'

# write_case NAME: every WRITE is answered NAME; dd conv=fsync must fail, and the
# backing file must hold nothing of it (the target wrote nothing) — or, after the
# target behaves and the unmount flushed, exactly the new data (never a mixture
# within a sector).
write_case()
{
	local name=$1 off=$((8 << 20)) len=$((1 << 20))
	log "--- WRITE answered '$name'"
	new_lun
	badtarget_start --lun "1=$IMG" --misbehave "$name,op=write" --start-off
	hostile_mount 1
	badtarget_misbehave on
	expect_io_eio "answers every WRITE with $name" write "$M/lun1" "$off" "$len" --pattern 5
	(($(badtarget_counter "misbehaved.$name") > 0)) ||
		fail "no WRITE reached the target: the test did not exercise $name"
	check_eq "bytes the target wrote while refusing every WRITE" \
		"$(badtarget_counter bytes_written.1)" 0
	check_cmp "$IMG" "$ORIG"
	check_log_says "what the target answered to the WRITE ($name)" "$LOG_RE"
	check_hwm 200
	badtarget_misbehave off
	hostile_umount
	# Nothing was acknowledged; what the final flush wrote must be whole sectors of
	# the new data, the rest the old.
	bt_pattern_file "$T/new" "$len" 5
	python3 - "$IMG" "$ORIG" "$T/new" "$off" "$len" <<'EOF' || fail "after unmount the backing file holds a sector that is neither the old nor the written data"
import sys
img, orig, new, off, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
a = open(img, "rb").read()
o = open(orig, "rb").read()
w = open(new, "rb").read()
if a[:off] != o[:off] or a[off + n:] != o[off + n:]:
    print("bytes outside the written range changed"); sys.exit(1)
for s in range(0, n, 512):
    got = a[off + s:off + s + 512]
    if got != o[off + s:off + s + 512] and got != w[s:s + 512]:
        print("sector at %d is garbage" % (off + s)); sys.exit(1)
EOF
	badtarget_stop
	pass "WRITE answered '$name': EIO, nothing acknowledged, the daemon exited after unmount"
}

# Offsets: the mount's probe reads the first 4 MiB and the last 2 MiB of the LUN, so
# the ranges read here (20 MiB and 40 MiB into 64 MiB) are not cached yet.

# read_case NAME: every READ is answered NAME; the reader gets EIO (buffered, then
# O_DIRECT at another offset), and once the target behaves the same ranges read
# back the target's bytes.
read_case()
{
	local name=$1 off=$((20 << 20)) off2=$((40 << 20)) len=$((128 << 10))
	log "--- READ answered '$name'"
	new_lun
	badtarget_start --lun "1=$IMG" --misbehave "$name,op=read" --start-off
	hostile_mount 1
	badtarget_misbehave on
	expect_io_eio "answers every READ with $name" read "$M/lun1" "$off" "$len" --expect "$IMG"
	if python3 -c 'import os, sys; os.close(os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECT))' \
		"$M/lun1" 2>/dev/null; then
		expect_io_eio "answers every READ with $name" read "$M/lun1" "$off2" "$len" \
			--expect "$IMG" --direct
	fi
	(($(badtarget_counter "misbehaved.$name") > 0)) ||
		fail "no READ reached the target: the test did not exercise $name"
	check_log_says "what the target answered to the READ ($name)" "$LOG_RE"
	badtarget_misbehave off
	expect_read_ok "after the target behaves again" "$M/lun1" "$off" "$len" "$IMG"
	expect_read_ok "after the target behaves again (O_DIRECT range)" "$M/lun1" "$off2" "$len" "$IMG"
	check_hwm 200
	hostile_umount
	badtarget_stop
	pass "READ answered '$name': EIO, nothing stale cached"
}

# capacity_case OPS: READ CAPACITY (OPS: rc16, or rc16+rc10) answered CHECK CONDITION
# with an empty data segment. With RC16 alone, falling back to RC10 is right (the file
# then has the true size) and so is refusing the LUN with a message; with both, the
# LUN has no size: the mount must fail saying so. Never "block size of 0 bytes".
capacity_case()
{
	local ops=$1 rc=0 size
	log "--- READ CAPACITY ($ops) answered CHECK CONDITION without sense"
	new_lun
	badtarget_start --lun "1=$IMG" --misbehave "sense-empty,op=$ops"
	iscsifs_try_mount "$(badtarget_url 1)" "$M" -o "$HOSTILE_OPTS" || rc=$?
	((rc != 124)) || fail "$ops with empty sense: neither mounted nor failed within 60 s"
	if grep -qi 'block size of 0' "$DAEMON_LOG"; then
		fail "$ops answered CHECK CONDITION without sense: the capacity was taken from an" \
			"unfilled buffer ($(grep -i 'block size of 0' "$DAEMON_LOG" | head -n 1))"
	fi
	if ((rc == 0)); then
		[[ $ops == rc16 ]] || fail "mounted although READ CAPACITY(16) and (10) both failed" \
			"(CHECK CONDITION without sense): lun1 has $(stat -c %s "$M/lun1") bytes"
		size=$(stat -c %s "$M/lun1")
		check_eq "size of lun1 (RC16 failed, RC10 says 64 MiB)" "$size" "$LUN_BYTES"
		hostile_umount
		pass "READ CAPACITY(16) without sense: fell back to READ CAPACITY(10), true size"
	else
		((TRY_RC != 0)) || fail "the daemon exited 0 without mounting"
		check_log_says "that READ CAPACITY failed" 'capacity'
		check_log_says "what the target answered (no sense)" "$LOG_RE"
		pass "READ CAPACITY ($ops) without sense: LUN refused with a message (exit $TRY_RC)"
	fi
	badtarget_stop
}

hostile_dispatch "$@"
for c in $CASES; do
	hostile_case write_case "$c"
	hostile_case read_case "$c"
done
hostile_case capacity_case rc16
hostile_case capacity_case rc16+rc10
hostile_summary
