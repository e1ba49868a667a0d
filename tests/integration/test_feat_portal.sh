#!/bin/bash
# Proves portal URLs and `iscsifs ls`: a portal URL mounts one directory per target
# (SendTargets) holding that target's disk LUNs as lun<N> files; `iscsifs ls` of the
# portal lists both targets with LUN 0 as controller and each disk LUN's size, block size
# and RO flag, exit 0; `iscsifs ls` of a target URL lists that target only; `iscsifs ls`
# of a port where nothing listens fails with one line on stderr and a non-zero exit.
source "$(dirname "$0")/lib.sh"
requires python3

IQN1=iqn.2026-11.org.iscsifs.test:portal-one
IQN2=iqn.2026-11.org.iscsifs.test:portal-two
tgt_start
tgt_target 1 "$IQN1"
tgt_target 2 "$IQN2"
tgt_sparse "$T/one1.img" 64M
tgt_sparse "$T/one2.img" 16M
tgt_sparse "$T/two1.img" 8M
tgt_lun 1 1 "$T/one1.img"
tgt_lun 1 2 "$T/one2.img" 4096
tgt_lun 2 1 "$T/two1.img"
tgt_readonly 2 1 1
# A marker at 1 MiB of each backing file, to tell the LUN files apart.
printf 'one-lun1' | dd of="$T/one1.img" bs=1 seek=1048576 conv=notrunc status=none
printf 'one-lun2' | dd of="$T/one2.img" bs=1 seek=1048576 conv=notrunc status=none
printf 'two-lun1' | dd of="$T/two1.img" bs=1 seek=1048576 conv=notrunc status=none
M=$T/mnt
PORTAL_URL=iscsi://$TGT_PORTAL

# listing DIR: "name type size mode" of every entry (hidden ones too), sorted.
listing()
{
	(cd "$1" && find . -mindepth 1 -maxdepth 2 -printf '%P %y %s %m\n' | sort)
}

# --- mount of the whole portal: one directory per target
iscsifs_mount "$PORTAL_URL" "$M"
got=$(listing "$M" | grep -v '^\.iscsifs/' | grep -v '^\.iscsifs ')
want=$(sort <<EOF
$IQN1 d 0 755
$IQN1/lun1 f 67108864 600
$IQN1/lun2 f 16777216 600
$IQN2 d 0 755
$IQN2/lun1 f 8388608 400
EOF
)
[[ $got == "$want" ]] || fail "layout of a portal mount differs:
$(diff <(echo "$want") <(echo "$got") | sed 's/^/  /')"
[[ -f $M/.iscsifs/stats.json ]] || fail "no .iscsifs/stats.json at the root of a portal mount"
check_eq "st_blksize of $IQN1/lun2" "$(stat -c %o "$M/$IQN1/lun2")" 4096
# The files are the right LUNs: the marker in each backing file reads back.
for f in "$IQN1/lun1=one-lun1" "$IQN1/lun2=one-lun2" "$IQN2/lun1=two-lun1"; do
	got=$(dd if="$M/${f%%=*}" bs=1 skip=1048576 count=8 status=none)
	check_eq "8 bytes at 1 MiB of $M/${f%%=*}" "$got" "${f#*=}"
done
iscsifs_umount_ok "$M"
pass "portal URL: one directory per target with its disk LUNs (sizes, modes, data)"

# --- iscsifs ls of the portal
# parse_ls OUT: one line "target lun type size block ro" per LUN row of `iscsifs ls`.
parse_ls()
{
	awk '/^[^ ]/ { t = $1; next }
	     $1 == "LUN" { next }
	     $1 ~ /^[0-9]+$/ {
		if ($3 == "-") { print t, $1, $2, "-", $4, $5 }
		else           { print t, $1, $2, $3 " " $4, $5, $6 }
	     }' <<<"$1" | sort
}
out=$T/ls.out
err=$T/ls.err
rc=0
timeout -k 5 60 "$ISCSIFS" ls "$PORTAL_URL" >"$out" 2>"$err" || rc=$?
((rc == 0)) || fail "iscsifs ls $PORTAL_URL exited $rc:
$(cat "$out" "$err")"
got=$(parse_ls "$(cat "$out")")
want=$(sort <<EOF
$IQN1 0 controller - 0 -
$IQN1 1 disk 64.0 MiB 512 no
$IQN1 2 disk 16.0 MiB 4096 no
$IQN2 0 controller - 0 -
$IQN2 1 disk 8.0 MiB 512 yes
EOF
)
[[ $got == "$want" ]] || fail "iscsifs ls $PORTAL_URL: rows differ (want, got):
$(diff <(echo "$want") <(echo "$got") | sed 's/^/  /')
--- full output ---
$(cat "$out")"
# Each target heads its block with its portal.
for iqn in "$IQN1" "$IQN2"; do
	grep -qxE "$iqn +$TGT_PORTAL" "$out" || fail "iscsifs ls: no header line '$iqn  $TGT_PORTAL':
$(cat "$out")"
done
# Identity columns: vendor and a WWN (naa.) for the disks.
grep -E "^  1 +disk " "$out" | grep -q ' naa\.' || fail "iscsifs ls: disk rows lack the WWN:
$(cat "$out")"
if grep -qi 'error' "$out" "$err"; then
	fail "iscsifs ls $PORTAL_URL succeeded but reported an error:
$(cat "$out" "$err")"
fi
pass "iscsifs ls of the portal: both targets, LUN 0 controller, disk sizes/blocks/RO, exit 0"

# --- iscsifs ls of one target
rc=0
timeout -k 5 60 "$ISCSIFS" ls "$(tgt_url "$IQN1")" >"$out" 2>"$err" || rc=$?
((rc == 0)) || fail "iscsifs ls $(tgt_url "$IQN1") exited $rc:
$(cat "$out" "$err")"
got=$(parse_ls "$(cat "$out")")
want=$(grep "^$IQN1 " <<<"$want")
[[ $got == "$want" ]] || fail "iscsifs ls of target $IQN1: rows differ (want, got):
$(diff <(echo "$want") <(echo "$got") | sed 's/^/  /')
--- full output ---
$(cat "$out")"
pass "iscsifs ls of a target URL: that target's LUNs only, exit 0"

# A target that does not exist: non-zero, and it says so.
rc=0
timeout -k 5 60 "$ISCSIFS" ls "$(tgt_url "$IQN1-nonexistent")" >"$out" 2>"$err" || rc=$?
((rc != 0 && rc != 124)) || fail "iscsifs ls of a nonexistent target: exit $rc, want failure:
$(cat "$out" "$err")"
grep -qi 'not found' "$out" "$err" || fail "iscsifs ls of a nonexistent target does not say 'not found':
$(cat "$out" "$err")"
pass "iscsifs ls of a nonexistent target fails (exit $rc) and says 'not found'"

# --- iscsifs ls where nothing listens
netstub refuse RPORT
expect_fail_msg "refused" "$ISCSIFS" ls "iscsi://127.0.0.1:$RPORT"
nl=$(printf '%s\n' "$EXPECT_STDERR" | grep -c .)
check_eq "stderr lines of iscsifs ls on a refused port" "$nl" 1
[[ ! -s $T/expect.out ]] || fail "iscsifs ls on a refused port wrote to stdout:
$(cat "$T/expect.out")"
((EXPECT_RC != 0)) || fail "iscsifs ls on a refused port exited 0"
# A target URL on a refused port fails too, and names the cause.
rc=0
timeout -k 5 60 "$ISCSIFS" ls "iscsi://127.0.0.1:$RPORT/$IQN1" >"$out" 2>"$err" || rc=$?
((rc != 0 && rc != 124)) || fail "iscsifs ls of a target on a refused port: exit $rc, want failure"
grep -qi 'refused' "$out" "$err" || fail "iscsifs ls of a target on a refused port does not say 'refused':
$(cat "$out" "$err")"
pass "iscsifs ls on a refused port: one line on stderr, exit $EXPECT_RC"
