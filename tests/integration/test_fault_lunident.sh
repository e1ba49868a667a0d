#!/bin/bash
# Proves one disk never becomes two files, and two disks are never taken for one (issue 8
# §1). With the misbehaving target: LUNs 1 and 2 report the same VPD 0x83 designator (the
# same serial, from which it derives its NAA 6): the mount is refused with one line naming
# both LUNs and the identifier, nothing is mounted; `iscsifs ls` lists both and says why;
# the URL of each LUN alone still mounts. With tgtd: LUNs 1, 255, 256, 257 and 16383 are
# listed once each by number with distinct identifiers, and two targets whose LUNs carry
# the same unregistered NAA 6 (company ID 0, from an equal scsi_id) but different NAA 3
# designators are two disks: the portal mounts both.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_badtarget.sh"
requires python3

M=$T/mnt
mkdir -p "$M"
EXPECT_TIMEOUT=30
# the identifier column: the first naa./eui./t10. word (SIZE is two words)
ident() { awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^(naa|eui|t10)\./) { print $i; next } }'; }

# --- one disk reported twice (badtarget) ---
for n in 1 2 3; do truncate -s 4M "$T/b$n.img"; done
badtarget_start --lun "1=$T/b1.img,serial=SAMEDISK" --lun "2=$T/b2.img,serial=SAMEDISK" \
	--lun "3=$T/b3.img"
out=$(timeout 60 "$ISCSIFS" ls "$(badtarget_url)" 2>"$T/ls.err") ||
	fail "iscsifs ls failed: $(cat "$T/ls.err")"
log "$out"
l1=$(awk '$1 == "1"' <<<"$out")
l2=$(awk '$1 == "2"' <<<"$out")
[[ -n $l1 && -n $l2 ]] || fail "ls lacks LUN 1 or 2: $out"
wwn=$(ident <<<"$l1")
[[ $wwn == naa.* ]] || fail "ls: LUN 1 has no NAA identifier: $l1"
[[ $l2 == *"$wwn"* && $l2 == *"same VPD 0x83 identifier"* ]] ||
	fail "ls: LUN 2 does not say it has LUN 1's identifier $wwn: $l2"

expect_fail_msg "$wwn" "$ISCSIFS" -f "$(badtarget_url)" "$M"
grep -qE 'LUN 1\b.*LUN 2\b|LUN 2\b.*LUN 1\b' <<<"$EXPECT_STDERR" ||
	fail "the refusal does not name LUNs 1 and 2: $EXPECT_STDERR"
! is_mounted "$M" || fail "$M is mounted after the refusal"
lines=$(grep -c . <<<"$EXPECT_STDERR")
((lines == 1)) || fail "the refusal is $lines lines, want 1: $EXPECT_STDERR"
pass "two LUNs with one designator: mount refused naming both, ls says why"

for n in 1 2; do
	iscsifs_mount "$(badtarget_url "$n")" "$M"
	check_eq "files of the URL .../$n" "$(ls "$M" | tr '\n' ' ')" "lun$n "
	iscsifs_umount_ok "$M"
done
pass "the URL of one of them still mounts it"
badtarget_stop

# --- tgtd: numbers, and unregistered NAA designators are not identities ---
tgt_start
IQN=iqn.2026-11.org.iscsifs.test:lunnum
IQN2=iqn.2026-11.org.iscsifs.test:lunnum2
tgt_target 1 "$IQN"
LUNS=(1 255 256 257 16383)
for n in "${LUNS[@]}"; do
	tgt_sparse "$T/n$n.img" 1M
	tgt_lun 1 "$n" "$T/n$n.img"
done
out=$(timeout 30 "$ISCSIFS" ls "$(tgt_url "$IQN")" 2>"$T/ls.err") ||
	fail "iscsifs ls failed: $(cat "$T/ls.err")"
got=$(awk 'NR > 2 && $2 == "disk" {print $1}' <<<"$out" | tr '\n' ' ')
check_eq "LUN numbers in ls" "$got" "$(printf '%s ' "${LUNS[@]}")"
ids=$(awk 'NR > 2 && $2 == "disk"' <<<"$out" | ident | sort -u | wc -l)
check_eq "distinct identifiers in ls" "$ids" "${#LUNS[@]}"
[[ $out != *"not mounted"* ]] || fail "ls says a LUN is not mounted: $out"
pass "ls: LUNs ${LUNS[*]} each once, by number, each with its own identifier"

# Target 2's LUN 1 gets target 1's scsi_id: tgt then reports the same NAA 6 (company ID
# 0) for both, but a different NAA 3. Two disks: the portal mounts both, writably.
tgt_target 2 "$IQN2"
tgt_sparse "$T/t2.img" 1M
tgt_lun 2 1 "$T/t2.img"
tgt_adm --op update --mode logicalunit --tid 2 --lun 1 --params "scsi_id=IET     00010001"
iscsifs_mount "iscsi://$TGT_PORTAL" "$M"
[[ -f $M/$IQN/lun1 && -f $M/$IQN2/lun1 ]] || fail "the portal mount lacks a LUN 1: $(ls -R "$M")"
printf 'target 2' | dd of="$M/$IQN2/lun1" conv=notrunc,fsync status=none
iscsifs_umount_ok "$M"
check_eq "first bytes of target 2's LUN 1" "$(head -c 8 "$T/t2.img")" "target 2"
cmp -s "$T/n1.img" /dev/zero -n 1048576 || fail "target 1's LUN 1 was written to"
pass "an unregistered NAA 6 shared by two targets' LUNs does not make them one disk"
