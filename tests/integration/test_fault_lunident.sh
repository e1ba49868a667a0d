#!/bin/bash
# Proves one disk never becomes two files (issue 8 §1): two LUNs of one target that report
# the same VPD 0x83 designator (tgt derives its NAA 6 designator from scsi_id, which we set
# equal) refuse the mount with one line naming both LUNs and the identifier, nothing is
# mounted; `iscsifs ls` lists both and says why; the URL of each LUN alone still mounts.
# The same across two targets of one portal (a portal URL). And `iscsifs ls` names every
# LUN once, by the number tgt gave it, with a distinct identifier (1, 255, 256, 257, 16383).
source "$(dirname "$0")/lib.sh"
requires python3

IQN=iqn.2026-11.org.iscsifs.test:lunident
IQN2=iqn.2026-11.org.iscsifs.test:lunident2
M=$T/mnt
mkdir -p "$M"
tgt_start
tgt_target 1 "$IQN"
for n in 1 2 3; do
	tgt_sparse "$T/l$n.img" 4M
	tgt_lun 1 "$n" "$T/l$n.img"
done
# LUN 2 claims LUN 1's identity.
tgt_adm --op update --mode logicalunit --tid 1 --lun 2 --params "scsi_id=IET     00010001"

# ls: both listed, LUN 2 says it has LUN 1's identifier; exit 0 (the listing worked).
out=$(timeout 30 "$ISCSIFS" ls "$(tgt_url "$IQN")" 2>"$T/ls.err") ||
	fail "iscsifs ls failed: $(cat "$T/ls.err")"
log "$out"
l1=$(awk '$1 == "1"' <<<"$out")
l2=$(awk '$1 == "2"' <<<"$out")
[[ -n $l1 && -n $l2 ]] || fail "ls lacks LUN 1 or 2: $out"
# the identifier column: the first naa./eui./t10. word (SIZE is two words)
ident() { awk '{ for (i = 1; i <= NF; i++) if ($i ~ /^(naa|eui|t10)\./) { print $i; next } }'; }
wwn=$(ident <<<"$l1")
[[ $wwn == naa.* ]] || fail "ls: LUN 1 has no NAA identifier: $l1"
[[ $l2 == *"$wwn"* && $l2 == *"same VPD 0x83 identifier"* ]] ||
	fail "ls: LUN 2 does not say it has LUN 1's identifier $wwn: $l2"

# mount of the target: refused, one line naming both LUNs and the identifier
EXPECT_TIMEOUT=30
expect_fail_msg "$wwn" "$ISCSIFS" -f "$(tgt_url "$IQN")" "$M"
grep -qE 'LUN 1\b.*LUN 2\b|LUN 2\b.*LUN 1\b' <<<"$EXPECT_STDERR" ||
	fail "the refusal does not name LUNs 1 and 2: $EXPECT_STDERR"
((EXPECT_RC != 0)) && ! is_mounted "$M" || fail "$M is mounted after the refusal"
lines=$(grep -c . <<<"$EXPECT_STDERR")
((lines == 1)) || fail "the refusal is $lines lines, want 1: $EXPECT_STDERR"
pass "two LUNs with one designator: mount refused naming both, ls says why"

# each LUN by its own URL mounts
for n in 1 2; do
	iscsifs_mount "$(tgt_url "$IQN" "$n")" "$M"
	check_eq "files of the URL .../$n" "$(ls "$M" | tr '\n' ' ')" "lun$n "
	iscsifs_umount_ok "$M"
done
pass "the URL of one of them still mounts it"

# across targets: target 2's LUN 1 has target 1's LUN 3 identity; a portal URL mounts
# both targets, so it must refuse. (LUN 2 of target 1 gets its own identity back.)
tgt_adm --op update --mode logicalunit --tid 1 --lun 2 --params "scsi_id=IET     00010002"
tgt_target 2 "$IQN2"
tgt_sparse "$T/t2.img" 4M
tgt_lun 2 1 "$T/t2.img"
tgt_adm --op update --mode logicalunit --tid 2 --lun 1 --params "scsi_id=IET     00010003"
expect_fail_msg "same identifier" "$ISCSIFS" -f "iscsi://$TGT_PORTAL" "$M"
[[ $EXPECT_STDERR == *"$IQN LUN 3"* && $EXPECT_STDERR == *"$IQN2 LUN 1"* ]] ||
	fail "the refusal does not name $IQN LUN 3 and $IQN2 LUN 1: $EXPECT_STDERR"
! is_mounted "$M" || fail "$M is mounted after the refusal"
iscsifs_mount "$(tgt_url "$IQN")" "$M"
check_eq "files of target 1 alone" "$(ls "$M" | tr '\n' ' ')" "lun1 lun2 lun3 "
iscsifs_umount_ok "$M"
pass "one designator behind two targets of a portal: mount refused naming both"

# ls names each LUN once by its number, as tgt numbers them.
tgt_target 3 iqn.2026-11.org.iscsifs.test:lunnum
LUNS=(1 255 256 257 16383)
for n in "${LUNS[@]}"; do
	tgt_sparse "$T/n$n.img" 1M
	tgt_lun 3 "$n" "$T/n$n.img"
done
out=$(timeout 30 "$ISCSIFS" ls "$(tgt_url iqn.2026-11.org.iscsifs.test:lunnum)" 2>"$T/ls.err") ||
	fail "iscsifs ls failed: $(cat "$T/ls.err")"
got=$(awk 'NR > 2 && $2 == "disk" {print $1}' <<<"$out" | tr '\n' ' ')
check_eq "LUN numbers in ls" "$got" "$(printf '%s ' "${LUNS[@]}")"
ids=$(awk 'NR > 2 && $2 == "disk"' <<<"$out" | ident | sort -u | wc -l)
check_eq "distinct identifiers in ls" "$ids" "${#LUNS[@]}"
[[ $out != *"not mounted"* ]] || fail "ls says a LUN is not mounted: $out"
pass "ls: LUNs ${LUNS[*]} each once, by number, each with its own identifier"
