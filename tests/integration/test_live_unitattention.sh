#!/bin/bash
# Proves the unit attentions of a live session change the namespace as issue 11 says,
# on the misbehaving target (tests/target/badtarget.py: tgt sends none of them):
#  - 2A/09 CAPACITY DATA HAS CHANGED, with READ CAPACITY now saying 16 MiB: lun1 grows
#    from 8 to 16 MiB at once (stat, no remount), logged with old and new size;
#  - 3F/0E REPORTED LUNS DATA HAS CHANGED: the identity of the LUN is checked on the
#    live session (same disk: the read that got it succeeds) and a rescan runs;
#  - 3F/03 INQUIRY DATA HAS CHANGED while VPD 0x80/0x83 name another disk: the write
#    that got it fails (never reaches that disk), lun1 fails for good, and the rescan
#    puts the disk now at LUN 1 in a new lun1 file (another inode).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_badtarget.sh"
requires python3 stat

M=$T/mnt
MiB=1048576

# start LUN1-SIZE MISBEHAVIOUR...: badtarget with LUN 1 on a fresh file, switched off
# until the mount is up; then mount it.
start()
{
	local size=$1 spec
	local -a args=()
	shift
	for spec in "$@"; do
		args+=(--misbehave "$spec")
	done
	rm -f "$T/lun1.img"
	truncate -s "$size" "$T/lun1.img"
	fill_random "$T/lun1.img" "$MiB"
	badtarget_start --lun "1=$T/lun1.img" --start-off "${args[@]}"
	iscsifs_mount "$(badtarget_url)" "$M" -o noop_interval=1,cache=none
	badtarget_misbehave on
}

stop()
{
	iscsifs_umount_ok "$M"
	badtarget_stop
	rm -f "$BT_CONTROL" # the next target starts with its misbehaviours off
}

# --- 2A/09: the capacity grows at once
start 8M "unit-attention:0x2a09,op=read,times=1" "capacity16:$((16 * MiB / 512 - 1)),op=rc16"
check_eq "size before" "$(stat -c %s "$M/lun1")" $((8 * MiB))
dd if="$M/lun1" of=/dev/null bs=4k count=1 skip=1300 iflag=direct status=none ||
	fail "the read that got 2A/09 failed"
wait_for 10 eval '[[ $(stat -c %s "$M/lun1") == $((16 * MiB)) ]]' ||
	fail "lun1 is $(stat -c %s "$M/lun1") bytes after 2A/09 and READ CAPACITY saying 16 MiB"
check_log_says "the capacity change" "capacity grew on a CAPACITY DATA HAS CHANGED unit attention from $((8 * MiB)) to $((16 * MiB)) bytes"
stop
log "2A/09: lun1 grew to 16 MiB at once"

# --- 3F/0E: identity checked on the live session, rescan
start 8M "unit-attention:0x3f0e,op=read,times=1"
ino=$(stat -c %i "$M/lun1")
dd if="$M/lun1" of=/dev/null bs=4k count=1 skip=1400 iflag=direct status=none ||
	fail "the read that got 3F/0E failed (same disk)"
check_log_says "the identity check" "still the same disk"
wait_for 10 grep -qE 'rescan \(.*unit attention' "$DAEMON_LOG" ||
	fail "no rescan after 3F/0E"
check_eq "lun1 is still the same file" "$(stat -c %i "$M/lun1")" "$ino"
stop
log "3F/0E: identity checked, rescan, same file"

# --- 3F/03 with another disk behind LUN 1
start 8M "unit-attention:0x3f03,op=write,times=1" "serial:OTHERDISK,op=inquiry"
ino=$(stat -c %i "$M/lun1")
before=$(badtarget_counter commands.0x2a)
out=$(bt_io write "$M/lun1" $((2 * MiB)) 4096 2>&1 || true)
[[ $out == errno* ]] || fail "the write that got 3F/03 with another disk behind LUN 1: $out"
# at most the one refused with the unit attention: the identity check before a write
# after a pause (lun.c) may find the other disk before the WRITE is sent at all
after=$(badtarget_counter commands.0x2a)
((after == before || after == before + 1)) ||
	fail "WRITEs that reached the target: $((after - before)), want at most the one refused with the unit attention"
check_log_says "the failed LUN" "failed for good \(another disk answers at its address"
wait_for 15 eval '[[ $(stat -c %i "$M/lun1" 2>/dev/null) != "$ino" && -e "$M/lun1" ]]' ||
	fail "lun1 is not a new file for the disk now at LUN 1"
stop
pass "unit attentions 2A/09, 3F/0E and 3F/03 on a live session"
