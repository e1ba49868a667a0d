#!/bin/bash
# Proves a READ succeeds only when every byte of its Data-In arrived, in place (issue 9
# §2, §12): Data-In that is short (GOOD, no residual), misplaced (an offset 512 too
# low), duplicated (extra, or instead of the last PDU), out of sequence (DataSN) or
# too long gives the reader EIO within the time budget, buffered and O_DIRECT; no
# wrong byte is returned, none stays cached once the target behaves again, and the
# daemon's log says what the target did.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_badtarget.sh"
requires python3

M=$T/mnt
IMG=$T/lun1.img
CASES=${HOSTILE_CASES:-datain-short datain-offset datain-dup-replace datain-dup datain-datasn datain-extra}

# Expected log lines once fixed (the transport names the fault), e.g.
#   "READ(10) ... LUN 1 at LBA 40960: target sent 130560 of 131072 bytes of Data-In with GOOD status"
#   "... Data-In at offset 65024 overlaps data already received (expected offset 65536)"
#   "... Data-In DataSN 2, expected 1"
#   "... target sent more Data-In than asked (131584 > 131072 bytes)"   (not "connection closed")
LOG_RE='data-?in'

# datain_case NAME [ARG]: every READ's Data-In is shaped by misbehaviour NAME.
datain_case()
{
	local spec=$1 off=$((20 << 20)) off2=$((40 << 20)) len=$((128 << 10))
	log "--- READ with Data-In '$spec'"
	rm -f "$IMG"
	truncate -s 64M "$IMG"
	fill_random "$IMG"
	badtarget_start --lun "1=$IMG" --misbehave "$spec" --start-off
	hostile_mount 1
	badtarget_misbehave on
	expect_io_eio "shapes every READ's Data-In with $spec" read "$M/lun1" "$off" "$len" --expect "$IMG"
	if python3 -c 'import os, sys; os.close(os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECT))' \
		"$M/lun1" 2>/dev/null; then
		expect_io_eio "shapes every READ's Data-In with $spec" read "$M/lun1" "$off2" "$len" \
			--expect "$IMG" --direct
	else
		log "O_DIRECT refused by the mount: buffered reads only"
	fi
	(($(badtarget_counter "misbehaved.${spec%%[:,]*}") > 0)) ||
		fail "the target never applied $spec: the test did not exercise it"
	check_log_says "what was wrong with the Data-In ($spec)" "$LOG_RE"
	badtarget_misbehave off
	expect_read_ok "after the target behaves again" "$M/lun1" "$off" "$len" "$IMG"
	expect_read_ok "after the target behaves again (O_DIRECT range)" "$M/lun1" "$off2" "$len" "$IMG"
	# A long sequential read (read-ahead, many commands in flight) is right too.
	expect_read_ok "(8 MiB, sequential) after the target behaves again" "$M/lun1" $((24 << 20)) $((8 << 20)) "$IMG"
	check_hwm 200
	hostile_umount
	badtarget_stop
	pass "READ with Data-In '$spec': EIO, the daemon says so, nothing stale cached"
}

hostile_dispatch "$@"
for c in $CASES; do
	hostile_case datain_case "$c"
done
hostile_summary
