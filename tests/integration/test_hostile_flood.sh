#!/bin/bash
# Proves a flood of NOP-Ins cannot starve I/O or timers (issue 9 §7): while the target
# sends unsolicited NOP-Ins as fast as the socket takes them, reads and writes still
# complete with the right data within a bound, an unanswered READ still fails with
# EIO within replacement_timeout + cmd_timeout (+ slack), the daemon's memory stays
# bounded, and it exits promptly after unmount.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_badtarget.sh"
requires python3

M=$T/mnt
IMG=$T/lun1.img
# I/O under the flood: generous, the flood eats CPU on both sides
IO_BOUND=30

new_lun()
{
	rm -f "$IMG"
	truncate -s 64M "$IMG"
	fill_random "$IMG"
}

# io_case: the flood alone; I/O goes on.
io_case()
{
	local out flood
	new_lun
	badtarget_start --lun "1=$IMG" --misbehave nop-flood --start-off
	hostile_mount 1
	badtarget_misbehave on
	sleep 2
	out=$(BT_IO_TIMEOUT=$((IO_BOUND + 30)) bt_io read "$M/lun1" $((20 << 20)) $((1 << 20)) --expect "$IMG")
	read -r kind secs _ <<<"$out"
	[[ $kind == ok ]] || fail "a 1 MiB read during a NOP-In flood: '$out', want the target's bytes"
	secs_le "$secs" "$IO_BOUND" || fail "a 1 MiB read during a NOP-In flood took $secs s, want <= $IO_BOUND s"
	log "ok: 1 MiB read during the flood in $secs s"
	out=$(BT_IO_TIMEOUT=$((IO_BOUND + 30)) bt_io write "$M/lun1" $((8 << 20)) $((1 << 20)) --pattern 6)
	read -r kind secs _ <<<"$out"
	[[ $kind == ok ]] || fail "a 1 MiB write + fsync during a NOP-In flood: '$out', want success"
	secs_le "$secs" "$IO_BOUND" || fail "a 1 MiB write + fsync during a NOP-In flood took $secs s, want <= $IO_BOUND s"
	log "ok: 1 MiB write + fsync during the flood in $secs s"
	flood=$(badtarget_counter nop_in_flood)
	((flood > 10000)) || fail "the target sent only $flood flood NOP-Ins: the test did not flood"
	log "the target sent $flood NOP-Ins so far"
	check_hwm 200
	badtarget_misbehave off
	hostile_umount
	bt_pattern_file "$T/p" $((1 << 20)) 6
	check_cmp "$IMG" "$T/p" $((1 << 20)) $((8 << 20)) 0
	badtarget_stop
	pass "NOP-In flood: reads and writes complete with the right data, memory bounded"
}

# timer_case: the flood, and READs never answered: the command timeout must still
# fire (EIO within the budget), and the daemon exits after unmount.
timer_case()
{
	new_lun
	badtarget_start --lun "1=$IMG" --misbehave nop-flood --misbehave noanswer --start-off
	hostile_mount 1
	badtarget_misbehave on
	sleep 2
	expect_io_eio "floods NOP-Ins and does not answer READs" read "$M/lun1" $((20 << 20)) 65536
	(($(badtarget_counter nop_in_flood) > 10000)) || fail "the target did not flood"
	check_hwm 200
	hostile_umount
	badtarget_stop
	pass "NOP-In flood + unanswered READ: EIO within the budget"
}

hostile_dispatch "$@"
hostile_case io_case
hostile_case timer_case
hostile_summary
