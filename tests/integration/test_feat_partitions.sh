#!/bin/bash
# Proves partition files and extended attributes: a GPT made with sgdisk through the
# mount shows at once (issue 11) and after a remount as lun1-part1/-part2 of the
# partitions' sizes (also an MBR on a 4096 B-block LUN); bytes written to a partition file at offset X land at partition
# start + X of the backing file, a write crossing the partition's end is short and leaves
# the next bytes alone, and the LUN file sees them (no stale page cache across aliases);
# user.blkid.type/label of a partition follow mkfs.ext4 and a wiped superblock without a
# remount, user.blkid.pttype of the LUN is gpt; the user.iscsi.* attributes name the
# target, LUN, WWN, serial, vendor, product and block size; setxattr fails.
source "$(dirname "$0")/lib.sh"
requires python3 sgdisk mkfs.ext4 getfattr setfattr blkid e2fsck

IQN=iqn.2026-11.org.iscsifs.test:parts
tgt_start
tgt_target 1 "$IQN"
tgt_sparse "$T/lun1.img" 64M
tgt_sparse "$T/lun2.img" 32M
tgt_lun 1 1 "$T/lun1.img"
tgt_lun 1 2 "$T/lun2.img" 4096
M=$T/mnt
URL=$(tgt_url "$IQN")

# xattr FILE NAME: the value of one extended attribute ("" and status 1 if absent).
xattr()
{
	getfattr --only-values -n "$2" -- "$1" 2>/dev/null
}

# check_xattr FILE NAME WANT
check_xattr()
{
	local got rc=0
	got=$(xattr "$1" "$2") || rc=$?
	((rc == 0)) || fail "getfattr -n $2 $1: exit $rc ($(getfattr -n "$2" -- "$1" 2>&1 | tail -n 1)), want '$3'"
	check_eq "$2 of $1" "$got" "$3"
}

# --- partition through the mount, then remount
iscsifs_mount "$URL" "$M"
out=$(run_bounded 60 sgdisk -n 1:2048:+16M -n 2:0:+20M "$M/lun1" 2>&1) ||
	fail "sgdisk through the mount failed: $out"
# The table is readable through the mount at once, and the LUN reports it re-probed.
got=$(run_bounded 30 sgdisk -p "$M/lun1" | awk '$1 ~ /^[12]$/ { print $1, $2, $3 }' | tr '\n' ' ')
check_eq "sgdisk -p of $M/lun1 (number start end)" "$got" "1 2048 34815 2 34816 75775 "
check_xattr "$M/lun1" user.blkid.pttype gpt
[[ -e $M/lun1-part1 && -e $M/lun1-part2 ]] ||
	fail "lun1-part1/2 did not appear when sgdisk closed lun1: $(ls "$M")"
# A DOS table on the 4096 B-block LUN, in 4096 B sectors: 4 MiB at 1 MiB, 8 MiB at 8 MiB.
python3 - "$M/lun2" <<'EOF'
import os, struct, sys
mbr = bytearray(512)
for i, (start, count) in enumerate([(256, 1024), (2048, 2048)]):
    mbr[446 + 16 * i:462 + 16 * i] = struct.pack("<B3sB3sII", 0, b"\xfe\xff\xff", 0x83,
                                                 b"\xfe\xff\xff", start, count)
mbr[510:512] = b"\x55\xaa"
fd = os.open(sys.argv[1], os.O_WRONLY)
os.pwrite(fd, bytes(mbr), 0)
os.close(fd)
EOF
got=$(cd "$M" && stat -c '%n %s' lun2-part* 2>&1 | tr '\n' ' ')
check_eq "lun2's partition files once the MBR writer closed it" "$got" \
	"lun2-part1 4194304 lun2-part2 8388608 "
iscsifs_umount_ok "$M"
# The GPT is on the target: the backing file has it.
got=$(sgdisk -p "$T/lun1.img" | awk '$1 ~ /^[12]$/ { print $1, $2, $3 }' | tr '\n' ' ')
check_eq "sgdisk -p of the backing file" "$got" "1 2048 34815 2 34816 75775 "

iscsifs_mount "$URL" "$M"
got=$(cd "$M" && stat -c '%n %s %a' lun1* lun2* | tr '\n' ' ')
check_eq "partition files (name size mode)" "$got" \
	"lun1 67108864 600 lun1-part1 16777216 600 lun1-part2 20971520 600 lun2 33554432 600 lun2-part1 4194304 600 lun2-part2 8388608 600 "
check_eq "st_blksize of lun2-part1" "$(stat -c %o "$M/lun2-part1")" 4096
P1=$((2048 * 512))
P2=$((34816 * 512))
check_xattr "$M/lun1-part1" user.blkid.part_offset $P1
check_xattr "$M/lun1-part2" user.blkid.part_offset $P2
check_xattr "$M/lun1-part2" user.blkid.part_number 2
check_xattr "$M/lun2-part2" user.blkid.part_offset $((2048 * 4096))
check_xattr "$M/lun2" user.blkid.pttype dos
pass "after a remount: lun1-part1/2 (GPT) and lun2-part1/2 (MBR, 4096 B sectors) with their sizes"

# --- a partition file is a window: offset X of lun1-part2 is P2 + X of the LUN
head -c 200000 /dev/urandom >"$T/pattern"
X=$((3 * 65536 - 777)) # unaligned, across cache blocks
# Read the LUN's bytes there first, so the kernel holds them in lun1's page cache.
dd if="$M/lun1" bs=4096 skip=$(((P2 + X) / 4096)) count=60 status=none >/dev/null
dd if="$T/pattern" of="$M/lun1-part2" bs=1M seek="$X" oflag=seek_bytes conv=notrunc status=none
check_cmp "$T/lun1.img" "$T/pattern" 200000 $((P2 + X)) 0
check_cmp "$T/lun1.img" /dev/zero "$X" "$P2" 0 # nothing before it in the partition moved
python3 - "$M/lun1" $((P2 + X)) "$T/pattern" <<'EOF' || fail "lun1 does not show what was written through lun1-part2 (stale cache across the two files)"
import os, sys
path, off, pat = sys.argv[1], int(sys.argv[2]), open(sys.argv[3], "rb").read()
fd = os.open(path, os.O_RDONLY)
got = os.pread(fd, len(pat), off)
os.close(fd)
if got != pat:
    i = next(i for i in range(len(pat)) if got[i] != pat[i])
    print("lun1 at %d: first difference at +%d: got %s, want %s" % (off, i, got[i:i+8].hex(), pat[i:i+8].hex()))
    sys.exit(1)
EOF
# ... and the other way round: what is written to lun1 shows in lun1-part2.
printf 'through-lun1' | dd of="$M/lun1" bs=1 seek=$((P2 + X)) conv=notrunc status=none
got=$(dd if="$M/lun1-part2" bs=1 skip="$X" count=12 status=none)
check_eq "12 bytes at $X of lun1-part2 after writing them through lun1" "$got" through-lun1
# A write crossing the partition's end is short; the byte after the partition is not touched.
printf 'after-part2' | dd of="$T/lun1.img" bs=1 seek=$((P2 + 20971520)) conv=notrunc status=none
got=$(python3 - "$M/lun1-part2" 20971520 <<'EOF'
import errno, os, sys
fd = os.open(sys.argv[1], os.O_WRONLY)
size = int(sys.argv[2])
n = os.pwrite(fd, b"E" * 20, size - 8)
try:
    os.pwrite(fd, b"F", size)
    at_end = "succeeded"
except OSError as e:
    at_end = errno.errorcode.get(e.errno, str(e.errno))
os.close(fd)
print(n, at_end)
EOF
)
check_eq "pwrite of 20 bytes at partition size - 8, then 1 byte at its end" "$got" "8 ENOSPC"
got=$(dd if="$T/lun1.img" bs=1 skip=$((P2 + 20971520 - 8)) count=19 status=none)
check_eq "backing bytes around the end of lun1-part2" "$got" "EEEEEEEEafter-part2"
pass "lun1-part2 is a window at $P2: data lands at start + X, short at its end, coherent with lun1"

# --- blkid attributes follow the content without a remount
check_xattr "$M/lun1" user.blkid.pttype gpt
xattr "$M/lun1-part1" user.blkid.type >/dev/null &&
	fail "user.blkid.type of the blank lun1-part1 is '$(xattr "$M/lun1-part1" user.blkid.type)'"
out=$(run_bounded 120 mkfs.ext4 -q -F -L mylabel "$M/lun1-part1" 2>&1) ||
	fail "mkfs.ext4 on lun1-part1 failed: $out"
check_xattr "$M/lun1-part1" user.blkid.type ext4
check_xattr "$M/lun1-part1" user.blkid.label mylabel
uuid=$(xattr "$M/lun1-part1" user.blkid.uuid) || fail "no user.blkid.uuid on lun1-part1"
out=$(run_bounded 60 e2fsck -fn "$M/lun1-part1" 2>&1) || fail "e2fsck -fn lun1-part1: $out"
# On the target the filesystem sits at the partition's start.
got=$(blkid -p -O "$P1" -o export "$T/lun1.img" | grep -E '^(TYPE|LABEL|UUID)=' | sort | tr '\n' ' ')
check_eq "blkid of the backing file at $P1" "$got" "LABEL=mylabel TYPE=ext4 UUID=$uuid "
check_xattr "$M/lun1" user.blkid.pttype gpt
# Wipe the superblock (through the LUN file): the attributes follow.
dd if=/dev/zero of="$M/lun1" bs=1024 seek=$(((P1 + 1024) / 1024)) count=1 conv=notrunc status=none
if got=$(xattr "$M/lun1-part1" user.blkid.type); then
	fail "user.blkid.type of lun1-part1 is still '$got' after its superblock was zeroed"
fi
pass "user.blkid.type/label/uuid re-probed after mkfs.ext4 and after a wipe, no remount; pttype gpt"

# --- user.iscsi.* attributes
info=$(tgt_adm --op show --mode target)
serial=$(awk '/LUN: 1$/ { f = 1 } f && /SCSI SN:/ { print $3; exit }' <<<"$info")
[[ -n $serial ]] || fail "cannot find LUN 1's serial in tgtadm's output: $info"
for f in lun1 lun1-part2; do
	check_xattr "$M/$f" user.iscsi.target "$IQN"
	check_xattr "$M/$f" user.iscsi.portal "$TGT_PORTAL"
	check_xattr "$M/$f" user.iscsi.lun 1
	check_xattr "$M/$f" user.iscsi.serial "$serial"
	check_xattr "$M/$f" user.iscsi.vendor IET
	check_xattr "$M/$f" user.iscsi.product VIRTUAL-DISK
	check_xattr "$M/$f" user.iscsi.block_size 512
	wwn=$(xattr "$M/$f" user.iscsi.wwn) || fail "no user.iscsi.wwn on $f"
	[[ $wwn =~ ^naa\.[0-9a-f]{16,32}$ ]] || fail "user.iscsi.wwn of $f: got '$wwn', want naa.<hex>"
done
check_xattr "$M/lun2" user.iscsi.lun 2
check_xattr "$M/lun2" user.iscsi.block_size 4096
[[ $(xattr "$M/lun2" user.iscsi.wwn) != "$wwn" ]] || fail "lun1 and lun2 have the same WWN $wwn"
# getfattr -d lists them all (listxattr).
names=$(getfattr -d -m - "$M/lun1" 2>/dev/null | sed -n 's/=.*//p' | sort | tr '\n' ' ')
for n in user.blkid.pttype user.iscsi.block_size user.iscsi.lun user.iscsi.product \
	user.iscsi.serial user.iscsi.target user.iscsi.vendor user.iscsi.wwn; do
	[[ " $names" == *" $n "* ]] || fail "getfattr -d $M/lun1 does not list $n (it lists: $names)"
done
pass "user.iscsi.* attributes: target, portal, lun, wwn, serial, vendor, product, block_size"

# --- attributes are read-only
for n in user.foo user.iscsi.target; do
	out=$(setfattr -n "$n" -v bar "$M/lun1" 2>&1) && fail "setfattr -n $n on lun1 succeeded"
	grep -qi 'not supported' <<<"$out" || fail "setfattr -n $n: want 'Operation not supported', got: $out"
done
out=$(setfattr -x user.iscsi.target "$M/lun1" 2>&1) && fail "setfattr -x user.iscsi.target succeeded"
check_xattr "$M/lun1" user.iscsi.target "$IQN"
pass "setxattr/removexattr fail with 'Operation not supported'"
iscsifs_umount_ok "$M"
