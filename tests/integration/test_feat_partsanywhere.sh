#!/bin/bash
# Proves partition files are found wherever libblkid finds them (issue 8 §2): a DOS table
# with an extended partition and logical partitions far past 2 MiB (partx: 1 2 5 6 7),
# a GPT whose primary header is destroyed (only the backup at the end is good), and an
# OpenBSD disklabel nested in a DOS partition each give exactly the lunN-partM files
# partx lists for the backing file, with partx's numbers, offsets and sizes (an extended
# partition is 1 KiB, as Linux's /dev/sdX2); a filesystem in a logical partition shows in
# its user.blkid.type; `iscsifs ls` counts the same partitions; each probe reads well
# under 3 MiB (the debug log's count; copying fixed regions read 4 MiB + 1 MiB per
# partition); a LUN with data where libblkid looks but nothing it knows is logged once
# at notice level, a blank LUN is not.
source "$(dirname "$0")/lib.sh"
requires python3 sfdisk sgdisk partx mkfs.ext4 getfattr

IQN=iqn.2026-11.org.iscsifs.test:partsanywhere
tgt_start
tgt_target 1 "$IQN"

# LUN 1: the issue's layout, and an ext4 filesystem in logical partition 6.
tgt_sparse "$T/l1.img" 256M
sfdisk -q "$T/l1.img" <<EOF
label: dos
start=2048, size=38912, type=83
start=40960, type=5
start=43008, size=81920, type=83
start=126976, size=122880, type=83
start=251904, size=200704, type=83
EOF
mkfs.ext4 -q -F -L inlogical -E offset=$((126976 * 512)) "$T/l1.img" $((122880 / 2))k

# LUN 2: GPT (sgdisk), then its primary header (LBA 1) zeroed.
tgt_sparse "$T/l2.img" 64M
sgdisk -n 1:2048:+8M -n 2:0:+16M -n 3:0:+4M "$T/l2.img" >/dev/null
dd if=/dev/zero of="$T/l2.img" bs=512 seek=1 count=1 conv=notrunc status=none

# LUN 3: an OpenBSD slice (type a6) holding a BSD disklabel with three partitions.
tgt_sparse "$T/l3.img" 64M
sfdisk -q "$T/l3.img" <<EOF
label: dos
start=2048, size=20480, type=83
start=22528, size=81920, type=a6
EOF
python3 - "$T/l3.img" 22528 <<'EOF'
import struct, sys
# struct bsd_disklabel (libblkid pt-bsd.h), little-endian, in sector 1 of the slice
path, slice_ = sys.argv[1], int(sys.argv[2])
lab = bytearray(512)
struct.pack_into("<I", lab, 0, 0x82564557)     # d_magic
struct.pack_into("<I", lab, 40, 512)           # d_secsize
struct.pack_into("<I", lab, 132, 0x82564557)   # d_magic2
struct.pack_into("<HII", lab, 138, 16, 8192, 0)  # d_npartitions, d_bbsize, d_sbsize
# (offset, size, fstype): a, b, c = the whole slice (unused type: skipped), d
parts = [(slice_ + 64, 16384, 7), (slice_ + 64 + 16384, 8192, 1), (slice_, 81920, 0),
         (slice_ + 64 + 24576, 20480, 7)]
for i, (off, size, fstype) in enumerate(parts):
    struct.pack_into("<IIIBBH", lab, 148 + 16 * i, size, off, 0, fstype, 0, 0)
with open(path, "r+b") as f:
    f.seek(slice_ * 512 + 512)
    f.write(lab)
EOF

# LUN 4: data where libblkid looks (from 1 KiB on), but nothing it knows. LUN 5: blank.
tgt_sparse "$T/l4.img" 16M
fill_random "$T/l4.img" 65536 1024
tgt_sparse "$T/l5.img" 16M
for n in 1 2 3 4 5; do
	tgt_lun 1 $n "$T/l$n.img"
done
URL=$(tgt_url "$IQN")
M=$T/mnt

# want_parts N: "lunN-partK START SIZE" per partition partx finds in lN.img (sizes in
# bytes; an extended partition 1 KiB).
want_parts()
{
	partx -g -o NR,START,SECTORS,TYPE "$T/l$1.img" |
		awk -v n="$1" '{ size = $3 * 512; if ($4 ~ /^0x(5|f|85)$/) size = 1024;
			print "lun" n "-part" $1, $2 * 512, size }'
}

# got_parts N: the same from the mount (xattr user.blkid.part_offset, stat size).
got_parts()
{
	local f
	for f in "$M"/lun"$1"-part*; do
		[[ -e $f ]] || continue
		printf '%s %s %s\n' "${f##*/}" \
			"$(getfattr --absolute-names --only-values -n user.blkid.part_offset "$f")" "$(stat -c %s "$f")"
	done | sort -V
}

ISCSIFS_DEBUG=1 iscsifs_mount "$URL" "$M"
for n in 1 2 3; do
	want=$(want_parts $n)
	[[ $(wc -l <<<"$want") -ge 3 ]] || fail "partx finds too few partitions in l$n.img: $want"
	got=$(got_parts $n)
	[[ $got == "$want" ]] || fail "partition files of lun$n differ from partx (name offset size):
$(diff <(echo "$want") <(echo "$got") | sed 's/^/  /' || true)"
	log "lun$n: $(tr '\n' ' ' <<<"$got")"
done
check_eq "partition numbers of lun1 (the issue's layout)" \
	"$(cd "$M" && ls -1 lun1-part* | sort -V | tr '\n' ' ')" \
	"lun1-part1 lun1-part2 lun1-part5 lun1-part6 lun1-part7 "
check_eq "user.blkid.type of lun1-part6" \
	"$(getfattr --absolute-names --only-values -n user.blkid.type "$M/lun1-part6")" ext4
check_eq "user.blkid.label of lun1-part6" \
	"$(getfattr --absolute-names --only-values -n user.blkid.label "$M/lun1-part6")" inlogical
check_eq "user.blkid.pttype of lun2 (backup GPT only)" \
	"$(getfattr --absolute-names --only-values -n user.blkid.pttype "$M/lun2")" gpt
# The logical partition is a window onto its place in the LUN.
printf 'in-part5' | dd of="$M/lun1-part5" bs=1 seek=4096 conv=notrunc,fsync status=none
check_eq "8 bytes at 43008*512+4096 of l1.img" \
	"$(dd if="$T/l1.img" bs=1 skip=$((43008 * 512 + 4096)) count=8 status=none)" in-part5
pass "DOS logical partitions, a GPT with only its backup header, a nested BSD label: partx's partitions"

# --- what probing cost, and the notice for data libblkid does not recognise
for n in 1 2 3 4 5; do
	line=$(grep -E "LUN $n: probe read [0-9]+ bytes" "$DAEMON_LOG" | head -n 1) ||
		fail "no 'LUN $n: probe read N bytes' line in the debug log"
	bytes=$(sed -E 's/.*probe read ([0-9]+) bytes.*/\1/' <<<"$line")
	log "LUN $n: probe read $bytes bytes"
	((bytes > 0 && bytes < 3 * 1048576)) ||
		fail "probing LUN $n read $bytes bytes, want 0 < bytes < 3 MiB: $line"
done
got=$(grep -c 'not blank.*libblkid recognises no' "$DAEMON_LOG" || true)
check_eq "notices 'not blank ... recognises no' in the log" "$got" 1
grep -q "LUN 4: not blank (data at byte 1024)" "$DAEMON_LOG" ||
	fail "the notice does not name LUN 4 and the offset of its data: $(grep 'not blank' "$DAEMON_LOG")"
pass "each probe read less than 3 MiB; data libblkid does not know is logged once (LUN 4 only)"
iscsifs_umount_ok "$M"

# --- iscsifs ls counts the same partitions
out=$(run_bounded 60 "$ISCSIFS" ls "$URL" 2>&1) || fail "iscsifs ls $URL failed: $out"
for n in 1 2 3; do
	want=$(want_parts $n | wc -l)
	row=$(awk -v n=$n '$1 == n' <<<"$out")
	[[ $row == *", $want partitions" ]] || fail "iscsifs ls: LUN $n row '$row', want '..., $want partitions'"
done
pass "iscsifs ls counts partx's partitions"
