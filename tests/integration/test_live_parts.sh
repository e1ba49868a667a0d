#!/bin/bash
# Proves partition files follow the partition table without a remount (issue 11):
# `sgdisk` on lun1 while mounted, then `ls`, shows lun1-part1 and lun1-part2 of the
# partitions' sizes; mkfs.ext4 through lun1-part1 gives a filesystem e2fsck -n finds
# clean (through the mount and in the backing file); deleting partition 2 removes
# lun1-part2, growing partition 1 grows lun1-part1; a partition file held open keeps
# its window until it is closed, then follows; writing elsewhere on the LUN (not where
# libblkid looked) does not re-probe.
source "$(dirname "$0")/lib.sh"
requires python3 sgdisk mkfs.ext4 e2fsck stat

IQN=iqn.2026-11.org.iscsifs.test:liveparts
M=$T/mnt
MiB=1048576
tgt_start
tgt_target 1 "$IQN"
tgt_sparse "$T/lun1.img" 64M
tgt_lun 1 1 "$T/lun1.img"
iscsifs_mount "$(tgt_url "$IQN")" "$M"

parts()
{
	local f out=
	for f in "$M"/lun1-part*; do
		[[ -e $f ]] && out+="${f##*/} "
	done
	printf '%s' "$out"
}
sgd()
{
	local out
	out=$(run_bounded 60 sgdisk "$@" "$M/lun1" 2>&1) || fail "sgdisk $* through the mount: $out"
}

check_eq "partition files at mount" "$(parts)" ""
sgd -n 1:2048:+16M -n 2:0:+20M
check_eq "partition files right after sgdisk" "$(parts)" "lun1-part1 lun1-part2 "
check_eq "lun1-part1 size" "$(stat -c %s "$M/lun1-part1")" $((16 * MiB))
check_eq "lun1-part2 size" "$(stat -c %s "$M/lun1-part2")" $((20 * MiB))

out=$(run_bounded 120 mkfs.ext4 -q -F "$M/lun1-part1" 2>&1) || fail "mkfs.ext4 on lun1-part1: $out"
out=$(run_bounded 120 e2fsck -n -f "$M/lun1-part1" 2>&1) || fail "e2fsck -n of lun1-part1 through the mount: $out"
sync
dd if="$T/lun1.img" of="$T/p1.img" bs=1M skip=1 count=16 status=none
out=$(run_bounded 120 e2fsck -n -f "$T/p1.img" 2>&1) || fail "e2fsck -n of partition 1 in the backing file: $out"
got=$(getfattr --only-values -n user.blkid.type "$M/lun1-part1" 2>/dev/null || true)
check_eq "user.blkid.type of lun1-part1" "$got" ext4
log "mkfs.ext4 through the new lun1-part1: clean"

# a write outside what libblkid read does not re-probe (stats.json counts re-probes)
reprobes() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["live"]["reprobes"])' "$M/.iscsifs/stats.json"; }
probes=$(reprobes)
((probes >= 2)) || fail "stats.json counts $probes re-probes after sgdisk and mkfs (want 2 or more)"
dd if=/dev/urandom of="$M/lun1-part2" bs=1M seek=5 count=1 conv=notrunc,fsync status=none
check_eq "re-probes after a write inside partition 2's body" "$(reprobes)" "$probes"

# delete partition 2, grow partition 1
sgd -d 2
check_eq "partition files after deleting partition 2" "$(parts)" "lun1-part1 "
sgd -d 1 -n 1:2048:+24M
check_eq "lun1-part1 size after growing partition 1" "$(stat -c %s "$M/lun1-part1")" $((24 * MiB))
out=$(run_bounded 120 e2fsck -n -f "$M/lun1-part1" 2>&1) || fail "e2fsck -n of lun1-part1 after the resize: $out"

# a partition file held open keeps its window until closed
exec {fd}<"$M/lun1-part1"
sgd -d 1 -n 1:4096:+8M
check_eq "lun1-part1 size while it is open" "$(stat -c %s "$M/lun1-part1")" $((24 * MiB))
exec {fd}<&-
wait_for 10 eval '[[ $(stat -c %s "$M/lun1-part1") == $((8 * MiB)) ]]' ||
	fail "lun1-part1 is $(stat -c %s "$M/lun1-part1") bytes after its last close; want $((8 * MiB))"
check_eq "user.blkid.part_offset of lun1-part1" \
	"$(getfattr --only-values -n user.blkid.part_offset "$M/lun1-part1")" $((4096 * 512))
iscsifs_umount_ok "$M"
pass "partition files follow sgdisk while mounted"
