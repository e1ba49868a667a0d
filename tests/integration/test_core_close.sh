#!/bin/bash
# Proves close-to-open in writeback mode: once close() has returned (no fsync), the
# file's data is in the target's backing file — also when the unmount follows at once —
# with background write-back made too slow to help (dirty_expire=600).
source "$(dirname "$0")/lib.sh"
requires python3 dd

IQN=iqn.2026-11.org.iscsifs.test:close
tgt_start
tgt_standard "$IQN"
M=$T/mnt
SRC=$T/src
head -c $((3 * 1024 * 1024 + 4321)) /dev/urandom >"$SRC"
SRCLEN=$(stat -c %s "$SRC")
OPTS=(-o "cache=writeback,dirty_expire=600")

# dd_to LUN BS SEEK_BLOCKS [COUNT_BLOCKS]: copy $SRC into the LUN file with dd.
dd_to()
{
	local -a count=()
	[[ -z ${4:-} ]] || count=("count=$4")
	run_bounded 60 dd if="$SRC" of="$M/lun$1" bs="$2" seek="$3" "${count[@]}" \
		conv=notrunc status=none || fail "dd to lun$1 (bs=$2 seek=$3) failed"
}

iscsifs_mount "$(tgt_url "$IQN")" "$M" "${OPTS[@]}"

# 1. After dd has exited, before any unmount or fsync: the data is on the target.
dd_to 1 64k 3
check_cmp "${LUN_FILE[1]}" "$SRC" "$SRCLEN" $((3 * 65536)) 0
dd_to 2 1000 7                   # unaligned on a 4096 B LUN: read-modify-write
check_cmp "${LUN_FILE[2]}" "$SRC" "$SRCLEN" 7000 0
check_cmp "${LUN_FILE[2]}" /dev/zero 7000
pass "after close() (dd exits), the data is in the backing file without fsync"

# 2. A small write through one open file, closed by python: the same, and the
# descriptor's close() itself reports success.
python3 - "$M/lun4" "${LUN_SIZE[4]}" <<'EOF' || fail "small writes + close on lun4"
import os, sys
path, size = sys.argv[1], int(sys.argv[2])
fd = os.open(path, os.O_WRONLY)
os.pwrite(fd, b"head", 5)
os.pwrite(fd, b"tail", size - 4)
os.close(fd)
EOF
check_eq "bytes 5..8 of lun4's backing file" "$(dd if="${LUN_FILE[4]}" bs=1 skip=5 count=4 status=none)" head
check_eq "last 4 bytes of lun4's backing file" "$(tail -c 4 "${LUN_FILE[4]}")" tail
pass "close() of a written descriptor leaves the data in the backing file"

# 3. Two descriptors: closing one that did not write must not be required for the
# other's data, and closing the writer flushes while the reader stays open.
exec {reader}<"$M/lun5"
dd_to 5 4096 11 100
check_cmp "${LUN_FILE[5]}" "$SRC" $((100 * 4096)) $((11 * 4096)) 0
exec {reader}<&-
pass "close() flushes even while another descriptor of the file stays open"

# 4. dd, then unmount at once: nothing is lost on the way out.
dd_to 1 4096 5000
iscsifs_umount_ok "$M"
check_cmp "${LUN_FILE[1]}" "$SRC" "$SRCLEN" $((5000 * 4096)) 0
check_cmp "${LUN_FILE[1]}" "$SRC" "$SRCLEN" $((3 * 65536)) 0
pass "dd && fusermount3 -u: the data is in the backing file"

# 5. The same with the file written by a shell redirection (open, write, close).
iscsifs_mount "$(tgt_url "$IQN" 2)" "$M" "${OPTS[@]}"
head -c 10000 /dev/zero | tr '\0' Z >"$T/z"
python3 -c 'import sys; sys.stdout.buffer.write(b"Z" * 10000)' 1<>"$M/lun2"
check_cmp "${LUN_FILE[2]}" "$T/z" 10000
iscsifs_umount_ok "$M"
pass "a redirection's writes are on the target when the writer exits"
