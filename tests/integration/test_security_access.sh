#!/bin/bash
# Proves LUN files belong to the mounting user with mode 0600 (0400 for a read-only LUN
# and with -o ro), that another user cannot read them: without allow_other FUSE shuts
# them out of the whole mount (EACCES), and with allow_other (which turns on
# default_permissions) they may look but still get EACCES on a 0600 file of root's.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_security.sh"
requires runuser
requires_root

IQN=iqn.2026-11.org.iscsifs.test:access
LT=5
NOBODY=(runuser -u nobody --)
tgt_start
tgt_target 1 "$IQN"
tgt_sparse "$T/lun1.img" 16M
tgt_lun 1 1 "$T/lun1.img"
tgt_sparse "$T/lun2.img" 16M
tgt_lun 1 2 "$T/lun2.img"
tgt_readonly 1 2 1
# nobody must be able to reach the mountpoint, or every check below passes for the
# wrong reason: $T is 0700 from mktemp
chmod 0755 "$T"
M=$T/mnt
mkdir -p "$M"
chmod 0755 "$M"
"${NOBODY[@]}" test -x "$M" || fail "nobody cannot reach $M even before mounting"

# as_nobody_fails WHAT CMD...: CMD run as nobody must fail with "Permission denied".
as_nobody_fails()
{
	local what=$1 out rc=0
	shift
	out=$(run_bounded 10 "${NOBODY[@]}" "$@" 2>&1) || rc=$?
	((rc != 0)) || fail "$what: nobody succeeded: $* -> $out"
	((rc != 124 && rc != 137)) || fail "$what: timed out: $*"
	grep -qi "permission denied" <<<"$out" || fail "$what: want Permission denied, got: $out"
	log "ok: $what: $* -> $out"
}

# 1. default: owner root, 0600 / 0400 for the write-protected LUN; nobody shut out
iscsifs_mount "$(tgt_url "$IQN")" "$M" -o "login_timeout=$LT"
check_eq "lun1 owner and mode" "$(stat -c '%u:%g %a' "$M/lun1")" "0:0 600"
check_eq "lun2 (read-only LUN) owner and mode" "$(stat -c '%u:%g %a' "$M/lun2")" "0:0 400"
head -c 4096 "$M/lun1" >/dev/null || fail "root cannot read its own lun1"
as_nobody_fails "no allow_other: read" cat "$M/lun1"
as_nobody_fails "no allow_other: write" dd if=/dev/zero of="$M/lun1" bs=512 count=1 conv=notrunc
as_nobody_fails "no allow_other: list the mount" ls "$M"
as_nobody_fails "no allow_other: stat" stat "$M/lun1"
iscsifs_umount_ok "$M"
pass "files are root's, 0600/0400; without allow_other nobody gets EACCES for everything"

# 2. allow_other: default_permissions is on, nobody sees the files but cannot open them
iscsifs_mount "$(tgt_url "$IQN")" "$M" -o "login_timeout=$LT,allow_other"
opts=$(awk -v m="$M" '$2 == m { print $4 }' /proc/mounts)
[[ ,$opts, == *,allow_other,* && ,$opts, == *,default_permissions,* ]] ||
	fail "allow_other mount options are '$opts', want allow_other and default_permissions"
"${NOBODY[@]}" ls "$M" | grep -qx lun1 || fail "allow_other: nobody cannot list the mount"
check_eq "lun1 as nobody sees it" "$("${NOBODY[@]}" stat -c '%u %a' "$M/lun1")" "0 600"
as_nobody_fails "allow_other: read a 0600 file" cat "$M/lun1"
as_nobody_fails "allow_other: write a 0600 file" dd if=/dev/zero of="$M/lun1" bs=512 count=1 conv=notrunc
as_nobody_fails "allow_other: read a 0400 file" cat "$M/lun2"
as_nobody_fails "allow_other: truncate" truncate -s 0 "$M/lun1"
head -c 4096 "$M/lun1" >/dev/null || fail "root cannot read lun1 with allow_other"
iscsifs_umount_ok "$M"
pass "allow_other: default_permissions on; nobody can look, not read or write (EACCES)"

# 3. -o ro: every LUN file 0400
iscsifs_mount "$(tgt_url "$IQN")" "$M" -o "login_timeout=$LT,ro"
check_eq "lun1 mode with -o ro" "$(stat -c '%a' "$M/lun1")" 400
check_eq "lun2 mode with -o ro" "$(stat -c '%a' "$M/lun2")" 400
iscsifs_umount_ok "$M"
pass "-o ro: 0400"
