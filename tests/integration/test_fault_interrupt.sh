#!/bin/bash
# Proves a target that answers nothing cannot hold a killed process or an unmount
# (issue 9 #8): with tgtd stopped and a long replacement_timeout, a reader blocked in
# read(2) - O_DIRECT and buffered - dies within seconds of SIGKILL (FUSE INTERRUPT
# withdraws its request), and after `fusermount3 -u` the daemon exits within seconds
# (it waits for nothing but write-back, and there is none); later, with the target
# back, a new mount reads the right data.
source "$(dirname "$0")/lib.sh"
requires python3 fusermount3

IQN=iqn.2026-11.org.iscsifs.test:interrupt
REPLACEMENT=60 # long: the bounds below must not come from it
BOUND=5        # seconds a killed reader or an unmount may take
tgt_start
tgt_target 1 "$IQN"
LUN=$T/lun1.img
tgt_sparse "$LUN" 64M
tgt_lun 1 1 "$LUN"
fill_random "$LUN"
M=$T/mnt
iscsifs_mount "$(tgt_url "$IQN" 1)" "$M" \
	-o "noop_interval=5,noop_timeout=5,cmd_timeout=30,replacement_timeout=$REPLACEMENT"

kill -STOP "$TGT_PID"
cleanup_fn eval 'kill -CONT $TGT_PID 2>/dev/null || true'
log "tgtd stopped"

# killed_after FLAGS OFFSET: start a 4 KiB read at OFFSET (not cached: past the regions
# the mount-time probe read), SIGKILL it once it is blocked, print the seconds it took
# to die.
killed_after()
{
	local flags=$1 off=$2 pid t0
	dd if="$M/lun1" of=/dev/null bs=4096 count=1 skip=$((off / 4096)) $flags status=none 2>/dev/null &
	pid=$!
	sleep 1
	pid_alive "$pid" || fail "dd $flags at $off finished while the target is stopped"
	t0=$(date +%s.%N)
	kill -KILL "$pid"
	wait_for "$REPLACEMENT" bash -c "! kill -0 $pid 2>/dev/null" || true
	wait "$pid" 2>/dev/null || true
	echo "$(date +%s.%N) - $t0" | bc
}

for flags in iflag=direct ""; do
	off=$((${#flags} ? 8 << 20 : 16 << 20))
	secs=$(killed_after "$flags" "$off")
	log "a read(2) ${flags:-buffered} blocked on the stopped target died ${secs} s after SIGKILL"
	awk -v s="$secs" -v b="$BOUND" 'BEGIN { exit !(s <= b) }' ||
		fail "a ${flags:-buffered} reader took $secs s to die after SIGKILL (bound $BOUND s;" \
			"replacement_timeout is $REPLACEMENT s)"
done
pass "readers blocked on a stopped target die at once on SIGKILL (O_DIRECT and buffered)"

t0=$SECONDS
fusermount3 -u "$M" || fail "fusermount3 -u $M failed"
wait_for $((BOUND + 2)) bash -c "! kill -0 $ISCSIFS_PID 2>/dev/null" ||
	fail "the daemon still runs $((SECONDS - t0)) s after fusermount3 -u"
pass "the daemon exited $((SECONDS - t0)) s after fusermount3 -u with the target stopped"

kill -CONT "$TGT_PID"
iscsifs_mount "$(tgt_url "$IQN" 1)" "$M"
check_cmp "$M/lun1" "$LUN"
iscsifs_umount_ok "$M"
pass "with the target back, a new mount reads the LUN right"
