#!/bin/bash
# Proves real clients work on LUN files and their result reaches the target: sgdisk
# partitions a LUN (GPT readable from the backing file), mkfs.ext4 + fuse2fs round-trip
# files and e2fsck finds the filesystem clean (also from the backing file), and
# qemu-img converts a qcow2 image onto a LUN that qemu-img compare then matches.
source "$(dirname "$0")/lib.sh"
requires sgdisk mkfs.ext4 e2fsck debugfs qemu-img python3

IQN=iqn.2026-11.org.iscsifs.test:clients
tgt_start
tgt_standard "$IQN"
M=$T/mnt
iscsifs_mount "$(tgt_url "$IQN")" "$M"

# --- sgdisk on lun1 (512 B blocks: sgdisk assumes 512 B sectors on a regular file)
run_bounded 60 sgdisk -o -n 1:2048:+16M -t 1:8300 -c 1:iscsifs-one -n 2:0:0 -t 2:8200 \
	"$M/lun1" >"$T/sgdisk.out" 2>&1 || { cat "$T/sgdisk.out"; fail "sgdisk failed on lun1"; }
run_bounded 60 sgdisk -v "$M/lun1" >"$T/sgdisk.v" 2>&1 || { cat "$T/sgdisk.v"; fail "sgdisk -v lun1"; }
grep -q 'No problems found' "$T/sgdisk.v" || { cat "$T/sgdisk.v"; fail "sgdisk -v finds problems"; }
check_eq "GPT signature in the backing file of lun1 (LBA 1)" \
	"$(dd if="${LUN_FILE[1]}" bs=512 skip=1 count=1 status=none | head -c 8)" "EFI PART"
run_bounded 60 sgdisk -p "${LUN_FILE[1]}" >"$T/sgdisk.p" 2>&1 || fail "sgdisk -p on the backing file"
grep -q 'iscsifs-one' "$T/sgdisk.p" || { cat "$T/sgdisk.p"; fail "partition 1 not in the backing file's GPT"; }
pass "sgdisk partitions lun1; the backing file has the GPT"

# --- mkfs.ext4 on lun2 (4096 B blocks), populated from a directory
mkdir -p "$T/tree/sub"
head -c 1500000 /dev/urandom >"$T/tree/random.bin"
seq 1 20000 >"$T/tree/sub/numbers.txt"
run_bounded 120 mkfs.ext4 -q -F -b 4096 -L iscsifs-test -d "$T/tree" "$M/lun2" ||
	fail "mkfs.ext4 on lun2 failed"
run_bounded 120 e2fsck -fn "$M/lun2" >"$T/fsck1" 2>&1 || { cat "$T/fsck1"; fail "e2fsck -fn lun2 (through the mount)"; }
if command -v fuse2fs >/dev/null && [[ -c /dev/fuse ]]; then
	mkdir -p "$T/ext"
	# In the foreground (-f), so that we know when it has written its last block.
	fuse2fs -f -o rw "$M/lun2" "$T/ext" </dev/null >"$T/fuse2fs.log" 2>&1 &
	FUSE2FS_PID=$!
	track_mount "$T/ext" "$FUSE2FS_PID" "$T/fuse2fs.log"
	wait_for 10 eval 'is_mounted "$T/ext" || ! pid_alive $FUSE2FS_PID' &&
		is_mounted "$T/ext" || fail "fuse2fs could not mount lun2"
	check_cmp "$T/ext/random.bin" "$T/tree/random.bin"
	check_cmp "$T/ext/sub/numbers.txt" "$T/tree/sub/numbers.txt"
	head -c 777777 /dev/urandom >"$T/new.bin"
	cp "$T/new.bin" "$T/ext/new.bin"
	run_bounded 30 umount "$T/ext" || run_bounded 30 fusermount -u "$T/ext" ||
		fail "cannot unmount fuse2fs"
	wait_for 30 eval '! pid_alive $FUSE2FS_PID' || fail "fuse2fs did not exit after its unmount"
	wait "$FUSE2FS_PID" || fail "fuse2fs exited with status $?"
	run_bounded 120 e2fsck -fn "$M/lun2" >"$T/fsck2" 2>&1 ||
		{ cat "$T/fsck2"; fail "e2fsck -fn lun2 after writing through fuse2fs"; }
	pass "mkfs.ext4 on lun2; fuse2fs reads files back and writes a new one; e2fsck clean"
else
	cp "$T/tree/random.bin" "$T/new.bin"
	log "fuse2fs unavailable: checking with debugfs only"
fi

# --- qemu-img: a qcow2 image converted onto lun5 (4096 B blocks, odd size)
head -c 4M /dev/urandom >"$T/raw.img"
head -c 1M /dev/zero >>"$T/raw.img"
head -c 3M /dev/urandom >>"$T/raw.img"
run_bounded 60 qemu-img convert -f raw -O qcow2 "$T/raw.img" "$T/img.qcow2" || fail "qemu-img to qcow2"
run_bounded 120 qemu-img convert -n -f qcow2 -O raw "$T/img.qcow2" "$M/lun5" ||
	fail "qemu-img convert onto lun5"
run_bounded 120 qemu-img compare -f qcow2 -F raw "$T/img.qcow2" "$M/lun5" >"$T/cmp.out" 2>&1 ||
	{ cat "$T/cmp.out"; fail "qemu-img compare qcow2 vs lun5"; }
pass "qemu-img convert qcow2 -> lun5; qemu-img compare: identical"

# --- everything reached the target
iscsifs_umount_ok "$M"
run_bounded 120 e2fsck -fn "${LUN_FILE[2]}" >"$T/fsck3" 2>&1 ||
	{ cat "$T/fsck3"; fail "e2fsck -fn on lun2's backing file"; }
run_bounded 30 debugfs -R "dump /random.bin $T/back.bin" "${LUN_FILE[2]}" >/dev/null 2>&1 ||
	fail "debugfs dump from lun2's backing file"
check_cmp "$T/back.bin" "$T/tree/random.bin"
if [[ -e $T/ext ]]; then
	run_bounded 30 debugfs -R "dump /new.bin $T/back-new.bin" "${LUN_FILE[2]}" >/dev/null 2>&1 ||
		fail "debugfs dump of new.bin from lun2's backing file"
	check_cmp "$T/back-new.bin" "$T/new.bin"
fi
check_cmp "${LUN_FILE[5]}" "$T/raw.img" "$(stat -c %s "$T/raw.img")"
check_cmp "${LUN_FILE[5]}" /dev/zero "" "$(stat -c %s "$T/raw.img")"
pass "after unmount the backing files hold the GPT, a clean ext4 with the files, the image"
