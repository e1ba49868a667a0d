#!/bin/bash
# Proves a discard is split lazily, with bounded memory (issue 9 §9): on a thin LUN
# whose VPD B0 says MAXIMUM UNMAP LBA COUNT = 1, `fallocate -p` of 256 MiB (524288
# one-block UNMAPs) succeeds within a bound, the daemon's peak RSS grows by less than
# 32 MiB while it runs, and the range reads back as zeros, through the mount and in
# the backing file after unmount, and nothing past it changed.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_badtarget.sh"
requires python3 fallocate

M=$T/mnt
IMG=$T/thin.img
PUNCH=$((256 << 20))
PUNCH_BOUND=180   # seconds; badtarget answers ~25000 UNMAPs/s on a 2-core VM
GROWTH_MB=32      # what the punch may add to the daemon's peak RSS

asan_small_quarantine
truncate -s 512M "$IMG"
fill_random "$IMG" $((64 << 20)) 0
fill_random "$IMG" $((64 << 20)) $((200 << 20))
dd if="$IMG" of="$T/beyond" bs=1M skip=256 count=8 status=none
badtarget_start --lun "1=$IMG,thin" --misbehave unmap-max:1
hostile_mount 1
# Warm the daemon up (cache, threads) so the baseline is not the cold start.
expect_read_ok "before the punch" "$M/lun1" 0 $((4 << 20)) "$IMG"
base=$(daemon_hwm_kb "$ISCSIFS_PID")

start=$SECONDS
rc=0
run_bounded $((PUNCH_BOUND + 60)) fallocate -p -o 0 -l "$PUNCH" "$M/lun1" 2>"$T/fallocate.err" || rc=$?
secs=$((SECONDS - start))
after=$(daemon_hwm_kb "$ISCSIFS_PID")
unmaps=$(badtarget_counter unmap_commands)
log "fallocate -p of $((PUNCH >> 20)) MiB: exit $rc in $secs s; $unmaps UNMAPs; daemon VmHWM $((base / 1024)) -> $((after / 1024)) MiB"
((rc == 0)) || fail "fallocate -p of $((PUNCH >> 20)) MiB on a thin LUN (max unmap 1 block) failed" \
	"(exit $rc): $(cat "$T/fallocate.err")"
((secs <= PUNCH_BOUND)) || fail "fallocate -p of $((PUNCH >> 20)) MiB took $secs s, want <= $PUNCH_BOUND s"
lim=$(hwm_limit_kb "$GROWTH_MB")
((after - base <= lim)) || fail "fallocate -p of $((PUNCH >> 20)) MiB in one-block UNMAPs grew the" \
	"daemon's peak RSS by $(((after - base) / 1024)) MiB ($((base / 1024)) -> $((after / 1024)) MiB)," \
	"want < $((lim / 1024)) MiB: a discard must be split lazily, not queued all at once"
((unmaps > 0)) || fail "no UNMAP reached the target"
check_cmp "$M/lun1" /dev/zero "$PUNCH" 0
hostile_umount
check_cmp "$IMG" /dev/zero "$PUNCH" 0
# What lies past the punched range is untouched.
check_cmp "$IMG" "$T/beyond" $((8 << 20)) "$PUNCH" 0
badtarget_stop
pass "fallocate -p of $((PUNCH >> 20)) MiB with max unmap 1: done in $secs s, peak RSS +$(((after - base) / 1024)) MiB, zeros"
