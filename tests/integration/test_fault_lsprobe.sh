#!/bin/bash
# Proves `iscsifs ls` does not hide a LUN it cannot read (issue 8 §6): with LUN 1's first
# blocks failing with MEDIUM ERROR (tgtd over errfs), ls still lists LUN 1 (as unreadable)
# and the healthy LUN 2 (with its content), prints a line on stderr naming the target,
# LUN 1 and the error, and exits 1; once the fault is gone it exits 0.
source "$(dirname "$0")/lib.sh"
requires python3 fusermount3 mkfs.ext4

: "${ERRFS:=$SRCDIR/build/tests/integration/errfs}"
[[ -x $ERRFS ]] || fail "errfs helper $ERRFS missing (build first: ninja -C build)"
requires_fuse
IQN=iqn.2026-11.org.iscsifs.test:lsprobe
DISK=$T/disk.img EFS=$T/efs FAULTS=$T/faults
tgt_sparse "$DISK" 8M
mkdir -p "$EFS"
"$ERRFS" "$DISK" "$FAULTS" "$EFS" </dev/null >"$T/errfs.log" 2>&1 &
EPID=$!
track_mount "$EFS" "$EPID" "$T/errfs.log"
wait_for 10 eval 'is_mounted "$EFS" || ! pid_alive $EPID' && is_mounted "$EFS" ||
	fail "errfs did not mount: $(cat "$T/errfs.log")"
errfs_down()
{
	_tgt_kill_now
	_unmount_one "$EFS"
}
cleanup_fn errfs_down

tgt_sparse "$T/ok.img" 8M
mkfs.ext4 -q -L healthy "$T/ok.img"
tgt_start
tgt_target 1 "$IQN"
tgt_lun 1 1 "$EFS/disk"
tgt_lun 1 2 "$T/ok.img"
# LUN 3 blank, LUN 4 random bytes: "blank" and "unknown" are told apart
tgt_sparse "$T/blank.img" 8M
tgt_lun 1 3 "$T/blank.img"
tgt_sparse "$T/noise.img" 8M
fill_random "$T/noise.img" $((8 << 20))
tgt_lun 1 4 "$T/noise.img"

echo "0 4096" >"$FAULTS.tmp" && mv "$FAULTS.tmp" "$FAULTS"
rc=0
timeout 60 "$ISCSIFS" ls "$(tgt_url "$IQN")" >"$T/ls.out" 2>"$T/ls.err" || rc=$?
log "exit $rc; stdout: $(cat "$T/ls.out"); stderr: $(cat "$T/ls.err")"
grep -q "EIO: read" "$T/errfs.log" || fail "the fault was not hit (errfs log: $(cat "$T/errfs.log"))"
check_eq "exit status of ls with an unreadable LUN" "$rc" 1
grep -qE "^iscsifs: $IQN LUN 1: .*(Input/output error|I/O)" "$T/ls.err" ||
	fail "stderr does not name LUN 1 and the error: $(cat "$T/ls.err")"
# (plus the lines the LUN layer logs where each failed read starts, with its LBA: all
# about LUN 1, nothing else)
others=$(grep -v "$IQN LUN 1: " "$T/ls.err" || true)
[[ -z $others ]] || fail "stderr has lines not about LUN 1: $others"
awk '$1 == "1"' "$T/ls.out" | grep -q "unreadable" ||
	fail "LUN 1 is not listed as unreadable: $(cat "$T/ls.out")"
awk '$1 == "2"' "$T/ls.out" | grep -q "ext4 healthy" ||
	fail "LUN 2 is not listed with its content: $(cat "$T/ls.out")"
awk '$1 == "3"' "$T/ls.out" | grep -q "blank" ||
	fail "LUN 3 (all zeros) is not listed as blank: $(cat "$T/ls.out")"
awk '$1 == "4"' "$T/ls.out" | grep -q "unknown" ||
	fail "LUN 4 (data libblkid does not know) is not listed as unknown: $(cat "$T/ls.out")"
pass "ls with a LUN whose content cannot be read: listed, named on stderr, exit 1"

: >"$FAULTS.tmp" && mv "$FAULTS.tmp" "$FAULTS"
rc=0
timeout 60 "$ISCSIFS" ls "$(tgt_url "$IQN")" >"$T/ls.out" 2>"$T/ls.err" || rc=$?
check_eq "exit status of ls once the fault is gone (stderr: $(cat "$T/ls.err"))" "$rc" 0
pass "and exit 0 once it reads"
