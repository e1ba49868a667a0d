#!/bin/bash
# Proves one writer per LUN per host (issue 8 §5): while iscsifs has LUN 1 mounted
# writable, a second writable mount of it (the whole target on another mountpoint, the
# same LUN on the same mountpoint, in the background as a daemon) and a read-only one are
# refused before anything is mounted, with one line naming the other daemon's pid and
# mountpoint; LUN 2 of the same target mounts meanwhile; two read-only mounts share the
# LUN and refuse a writable one; after the writer exits, and after a writer is killed
# with SIGKILL, a new writable mount succeeds; the lock directory is 0700.
source "$(dirname "$0")/lib.sh"
requires python3

IQN=iqn.2026-11.org.iscsifs.test:twomounts
tgt_start
tgt_target 1 "$IQN"
tgt_sparse "$T/lun1.img" 16M
tgt_sparse "$T/lun2.img" 16M
tgt_lun 1 1 "$T/lun1.img"
tgt_lun 1 2 "$T/lun2.img"
URL=$(tgt_url "$IQN")
M1=$T/m1
M2=$T/m2
M3=$T/m3
mkdir -p "$M1" "$M2" "$M3"

# refused WANT ARGS... MNT: `iscsifs -f ARGS... MNT` fails within EXPECT_TIMEOUT with WANT
# on stderr in one line, and mounts nothing more on MNT.
refused()
{
	local want=$1 mnt=${*: -1} before
	shift
	before=$(grep -c " $mnt fuse" /proc/mounts || true)
	expect_fail_msg "$want" "$ISCSIFS" -f "$@"
	check_eq "exit status of the refused iscsifs $*" "$EXPECT_RC" 1
	check_eq "lines on stderr of the refused iscsifs $*" "$(wc -l <<<"$EXPECT_STDERR")" 1
	check_eq "FUSE mounts on $mnt after the refused iscsifs $*" \
		"$(grep -c " $mnt fuse" /proc/mounts || true)" "$before"
}

# --- a writer holds LUN 1
iscsifs_mount "$URL/1" "$M1"
A=$ISCSIFS_PID
refused "LUN 1 of $IQN (naa." "$URL" "$M2"
[[ $EXPECT_STDERR == *"already mounted writable by iscsifs pid $A on $M1"* ]] ||
	fail "the refusal does not name pid $A and $M1: $EXPECT_STDERR"
[[ $EXPECT_STDERR == *"fusermount3 -u $M1"* ]] || fail "the refusal does not say what to do: $EXPECT_STDERR"
# on the same mountpoint: refused before the lock is looked at, the mountpoint being
# an iscsifs mount already (a usage error, exit 2)
expect_fail_msg "mountpoint $M1 is already an iscsifs mount" "$ISCSIFS" -f "$URL/1" "$M1"
check_eq "exit status of a mount on top of $M1" "$EXPECT_RC" 2
check_eq "FUSE mounts on $M1 after it" "$(grep -c " $M1 fuse" /proc/mounts)" 1
refused "is mounted writable by iscsifs pid $A on $M1" -o ro "$URL/1" "$M2"
# As a daemon (no -f): the parent reports the child's refusal and exits non-zero.
expect_fail_msg "already mounted writable by iscsifs pid $A on $M1" "$ISCSIFS" "$URL/1" "$M3"
! is_fuse_mounted "$M3" || fail "$M3 is mounted after a refused daemon mount"
# Another LUN of the same target is free.
iscsifs_mount "$URL/2" "$M2"
printf 'lun2' | dd of="$M2/lun2" conv=notrunc status=none
iscsifs_umount_ok "$M2"
pass "a writable mount of LUN 1 refuses a second writable and a read-only one (pid, mountpoint, what to do); LUN 2 mounts"

# Where the lock lives.
check_eq "mode of \$XDG_RUNTIME_DIR/iscsifs" "$(stat -c %a "$XDG_RUNTIME_DIR/iscsifs")" 700
ls "$XDG_RUNTIME_DIR/iscsifs/"*.lock >/dev/null 2>&1 || fail "no lock file in $XDG_RUNTIME_DIR/iscsifs"
grep -l "^pid=$A$" "$XDG_RUNTIME_DIR/iscsifs/"* >/dev/null ||
	fail "no holder note for pid $A in $XDG_RUNTIME_DIR/iscsifs: $(ls "$XDG_RUNTIME_DIR/iscsifs")"
iscsifs_umount_ok "$M1"
grep -l "^pid=$A$" "$XDG_RUNTIME_DIR/iscsifs/"* >/dev/null 2>&1 &&
	fail "the holder note of pid $A is still there after it exited"

# --- read-only mounts share; a writer is refused while they hold it
iscsifs_mount "$URL/1" "$M1" -o ro
R1=$ISCSIFS_PID
iscsifs_mount "$URL/1" "$M2" -o ro
refused "is mounted read-only by iscsifs pid" "$URL/1" "$M3"
[[ $EXPECT_STDERR =~ pid\ ($R1\ on\ $M1|$ISCSIFS_PID\ on\ $M2) ]] ||
	fail "the refusal names neither read-only mount: $EXPECT_STDERR"
iscsifs_umount_ok "$M1"
iscsifs_umount_ok "$M2"
pass "two read-only mounts share LUN 1 and refuse a writable one"

# --- after the writer exited, and after one was killed, a writer mounts
iscsifs_mount "$URL/1" "$M1"
printf 'first' | dd of="$M1/lun1" conv=notrunc status=none
kill -KILL "$ISCSIFS_PID"
wait_for 10 eval '! pid_alive '"$ISCSIFS_PID" || fail "iscsifs $ISCSIFS_PID survived SIGKILL"
iscsifs_mount "$URL/1" "$M2"
printf 'second' | dd of="$M2/lun1" conv=notrunc status=none
iscsifs_umount_ok "$M2"
check_eq "first bytes of lun1.img" "$(head -c 6 "$T/lun1.img")" second
pass "a writable mount succeeds after the previous writer exited or was killed (SIGKILL)"
