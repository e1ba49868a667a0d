#!/bin/bash
# Proves every LUN is reached exactly as the target reported it (issue 8 §1): with LUNs
# 1, 2, 255, 256, 257, 258, 1000 and 16383 on one tgtd target, each file lunN exists
# once, its user.iscsi.serial is tgt's serial of LUN N, and a write to each lands in its
# own backing file only (LUN 257 used to be addressed as LUN 1, 256 as the controller).
source "$(dirname "$0")/lib.sh"
requires python3 getfattr

IQN=iqn.2026-11.org.iscsifs.test:lunaddr
LUNS=(1 2 255 256 257 258 1000 16383)
tgt_start
tgt_target 1 "$IQN"
for n in "${LUNS[@]}"; do
	tgt_sparse "$T/l$n.img" 4M
	tgt_lun 1 "$n" "$T/l$n.img"
done
M=$T/mnt
iscsifs_mount "$(tgt_url "$IQN")" "$M"

got=$(cd "$M" && ls -1 | sort -V | tr '\n' ' ')
want=$(printf 'lun%s\n' "${LUNS[@]}" | sort -V | tr '\n' ' ')
check_eq "LUN files" "$got" "$want"

# tgt's serial of each LUN, from its own listing ("SCSI SN: beaf1N...").
declare -A SN=()
lun=
while IFS= read -r line; do
	if [[ $line =~ ^[[:space:]]*LUN:\ ([0-9]+)$ ]]; then
		lun=${BASH_REMATCH[1]}
	elif [[ $line =~ SCSI\ SN:\ (.*)$ && -n $lun ]]; then
		SN[$lun]=${BASH_REMATCH[1]}
	fi
done < <(tgt_adm --op show --mode target)
for n in "${LUNS[@]}"; do
	[[ -n ${SN[$n]:-} ]] || fail "tgtadm shows no serial for LUN $n"
	got=$(getfattr --absolute-names --only-values -n user.iscsi.serial "$M/lun$n")
	check_eq "serial of lun$n" "$got" "${SN[$n]}"
	check_eq "user.iscsi.lun of lun$n" "$(getfattr --absolute-names --only-values -n user.iscsi.lun "$M/lun$n")" "$n"
done

# A distinct record at offset 0 of each LUN, through the mount.
for n in "${LUNS[@]}"; do
	printf 'this is LUN %05d\n' "$n" | dd of="$M/lun$n" conv=notrunc,fsync status=none
done
iscsifs_umount_ok "$M"
for n in "${LUNS[@]}"; do
	want=$(printf 'this is LUN %05d' "$n")
	got=$(head -c 17 "$T/l$n.img")
	check_eq "first bytes of the backing file of LUN $n" "$got" "$want"
done
pass "LUNs ${LUNS[*]}: each reached as reported, serials and data in their own LUN"
