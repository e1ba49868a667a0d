#!/bin/bash
# Proves fallocate and SEEK_DATA/SEEK_HOLE: on a thin-provisioned LUN (tgtd
# thin_provisioning=1: LBPME=1, LBPRZ=1, VPD B2 LBPU/LBPWS) PUNCH_HOLE makes the range
# read as zeroes through the mount and in the backing file and deallocates it there
# (fewer blocks, SEEK_HOLE), also at unaligned edges, on 4096 B blocks, and over data
# still dirty in the cache; ZERO_RANGE zeroes exactly the range; on a LUN without thin
# provisioning PUNCH_HOLE fails with EOPNOTSUPP and changes nothing while ZERO_RANGE
# works; SEEK_DATA/SEEK_HOLE on the thin LUN agree with the backing file's holes (tgtd
# answers GET LBA STATUS from them) and see data that is not yet written back; on the
# LUN without thin provisioning there are no holes (SEEK_HOLE = size).
source "$(dirname "$0")/lib.sh"
requires python3 fallocate

IQN=iqn.2026-11.org.iscsifs.test:zero
tgt_start
tgt_target 1 "$IQN"
declare -A SIZE=([1]=67108864 [2]=67108864 [3]=33554432)
declare -A BS=([1]=512 [2]=512 [3]=4096)
for n in 1 2 3; do
	tgt_sparse "$T/lun$n.img" "${SIZE[$n]}"
	tgt_lun 1 "$n" "$T/lun$n.img" "${BS[$n]}"
	fill_random "$T/lun$n.img"
	cp "$T/lun$n.img" "$T/model$n"
done
for n in 1 3; do
	tgt_adm --op update --mode logicalunit --tid 1 --lun "$n" --params thin_provisioning=1
done

# What the target reports (the facts this test relies on; see the file's first comment).
if command -v iscsi-readcapacity16 >/dev/null; then
	rc16=$(timeout 10 iscsi-readcapacity16 "$(tgt_url "$IQN" 1)" 2>&1) || true
	grep -q 'LBPME:1 LBPRZ:1' <<<"$rc16" || fail "thin LUN 1: READ CAPACITY(16) lacks LBPME:1 LBPRZ:1:
$rc16"
	rc16=$(timeout 10 iscsi-readcapacity16 "$(tgt_url "$IQN" 2)" 2>&1) || true
	grep -q 'LBPME:0 LBPRZ:0' <<<"$rc16" || fail "LUN 2: READ CAPACITY(16) lacks LBPME:0 LBPRZ:0:
$rc16"
fi
if command -v iscsi-inq >/dev/null; then
	# VPD B2 (logical block provisioning): UNMAP and WRITE SAME(16) with UNMAP on LUN 1 only.
	b2=$(timeout 10 iscsi-inq -e 1 -c 178 "$(tgt_url "$IQN" 1)" 2>&1 | grep -E '^(lbpu|lbpws|lbprz):' | tr '\n' ' ') || true
	check_eq "VPD B2 of thin LUN 1" "$b2" "lbpu:1 lbpws:1 lbprz:1 "
	b2=$(timeout 10 iscsi-inq -e 1 -c 178 "$(tgt_url "$IQN" 2)" 2>&1 | grep -E '^(lbpu|lbpws|lbprz):' | tr '\n' ' ') || true
	check_eq "VPD B2 of LUN 2" "$b2" "lbpu:0 lbpws:0 lbprz:0 "
fi

# Can the backing file system deallocate? (ext4, xfs, tmpfs: yes.)
HOLES=1
truncate -s 1M "$T/holeprobe"
dd if=/dev/urandom of="$T/holeprobe" bs=1M count=1 conv=notrunc status=none
fallocate --punch-hole --keep-size -o 0 -l 1M "$T/holeprobe" 2>/dev/null || HOLES=0
((HOLES)) || log "the backing file system of $T cannot punch holes: deallocation not checked"

cat >"$T/z.py" <<'EOF'
# z.py falloc FILE MODE OFF LEN      -> "ok" or the errno name (MODE: punch, zero, plain)
# z.py seek FILE OFF...              -> "OFF DATA HOLE" per offset (ENXIO etc. by name)
# z.py zero FILE OFF LEN             -> write zeroes (the model)
# z.py dirtyseek FILE OFF LEN FROM   -> pwrite LEN random bytes at OFF, then without
#                                       closing: "DATA HOLE" of SEEK_DATA/SEEK_HOLE at FROM
import ctypes, errno, os, sys

libc = ctypes.CDLL(None, use_errno=True)
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
MODES = {"punch": 0x02 | 0x01, "zero": 0x10 | 0x01, "plain": 0x01}

def ename(e):  # ENOTSUP and EOPNOTSUPP are one number on Linux: name it as the README does
    return "EOPNOTSUPP" if e == errno.EOPNOTSUPP else errno.errorcode.get(e, str(e))

def seek(fd, off, whence):
    try:
        return str(os.lseek(fd, off, whence))
    except OSError as e:
        return ename(e.errno)

cmd, path = sys.argv[1], sys.argv[2]
a = [int(x) for x in sys.argv[3 + (cmd == "falloc"):]]
if cmd == "falloc":
    fd = os.open(path, os.O_RDWR)
    r = libc.fallocate(fd, MODES[sys.argv[3]], a[0], a[1])
    print("ok" if r == 0 else ename(ctypes.get_errno()))
    os.close(fd)
elif cmd == "seek":
    fd = os.open(path, os.O_RDONLY)
    for off in a:
        print(off, seek(fd, off, os.SEEK_DATA), seek(fd, off, os.SEEK_HOLE))
    os.close(fd)
elif cmd == "zero":
    fd = os.open(path, os.O_WRONLY)
    os.pwrite(fd, bytes(a[1]), a[0])
    os.close(fd)
elif cmd == "dirtyseek":
    fd = os.open(path, os.O_RDWR)
    os.pwrite(fd, os.urandom(a[1]), a[0])
    print(seek(fd, a[2], os.SEEK_DATA), seek(fd, a[2], os.SEEK_HOLE))
    os.close(fd)
EOF
z() { python3 "$T/z.py" "$@"; }
blocks() { stat -c %b "$1"; }

# A hole in the backing file of LUN 2 (no thin provisioning): reads as zeroes, but the
# LUN does not report it (SEEK_HOLE).
if ((HOLES)); then
	fallocate --punch-hole --keep-size -o $((32 << 20)) -l $((4 << 20)) "$T/lun2.img"
	python3 "$T/z.py" zero "$T/model2" $((32 << 20)) $((4 << 20))
fi

M=$T/mnt
# dirty_expire long enough that data written without fsync stays dirty in the cache.
iscsifs_mount "$(tgt_url "$IQN")" "$M" -o dirty_expire=60

# falloc_ok LUN MODE OFF LEN: fallocate through the mount succeeds; the model follows.
falloc_ok()
{
	local got
	got=$(z falloc "$M/lun$1" "$2" "$3" "$4")
	check_eq "fallocate $2 of lun$1 at $3 length $4" "$got" ok
	z zero "$T/model$1" "$3" "$4"
}

# check_lun LUN WHAT: the LUN reads as the model through the mount and in the backing file.
check_lun()
{
	log "check lun$1 against its model: $2"
	check_cmp "$M/lun$1" "$T/model$1"
	check_cmp "$T/lun$1.img" "$T/model$1"
}

# --- thin LUN 1: an aligned punch
OFF=$((4 << 20)) LEN=$((2 << 20))
# Read it first: the kernel's page cache of lun1 must drop these pages too.
dd if="$M/lun1" bs=1M skip=4 count=2 status=none | cmp -s - <(head -c $((6 << 20)) "$T/model1" | tail -c $LEN) ||
	fail "lun1 does not read its backing data before the punch"
b0=$(blocks "$T/lun1.img")
falloc_ok 1 punch $OFF $LEN
check_lun 1 "punch $OFF+$LEN"
b1=$(blocks "$T/lun1.img")
if ((HOLES)); then
	(((b0 - b1) * 512 >= LEN * 3 / 4)) || fail "punching $LEN bytes freed only $(((b0 - b1) * 512)) bytes of the backing file ($b0 -> $b1 blocks)"
	got=$(z seek "$T/lun1.img" 0 $OFF)
	check_eq "SEEK_DATA/SEEK_HOLE of the backing file at 0 and $OFF" "$(tr '\n' ' ' <<<"$got")" \
		"0 0 $OFF $OFF $((OFF + LEN)) $OFF "
fi
pass "thin LUN: PUNCH_HOLE of 2 MiB reads as zeroes (mount and backing) and frees $(((b0 - b1) / 2)) KiB"

# --- unaligned punch and zero-range on 512 B and 4096 B blocks
falloc_ok 1 punch $(((8 << 20) + 100)) $(((1 << 20) + 1000))
falloc_ok 1 zero $(((12 << 20) + 777)) $(((3 << 20) + 5))
falloc_ok 1 zero $(((16 << 20) + 5)) 300 # inside one block
check_lun 1 "unaligned punch and zero-range"
b0=$(blocks "$T/lun3.img")
falloc_ok 3 punch $(((8 << 20) + 3000)) $(((2 << 20) + 5000))
falloc_ok 3 zero $(((4 << 20) + 1000)) 100000
falloc_ok 3 zero $(((20 << 20) - 100)) 200 # across a 4096 B block boundary, no whole block
falloc_ok 3 punch $(((24 << 20) + 4096)) 4096
check_lun 3 "unaligned punch and zero-range, 4096 B blocks"
b1=$(blocks "$T/lun3.img")
if ((HOLES)); then
	(((b0 - b1) * 512 >= (2 << 20))) || fail "thin lun3: punching 2 MiB freed only $(((b0 - b1) * 512)) bytes"
fi
pass "thin LUNs: unaligned PUNCH_HOLE and ZERO_RANGE zero exactly their range (512 and 4096 B blocks)"

# --- punch over data still dirty in the cache: the dirty data must not come back
python3 - "$M/lun1" $((20 << 20)) <<'EOF'
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_long]
fd = os.open(sys.argv[1], os.O_RDWR)
off = int(sys.argv[2])
os.pwrite(fd, os.urandom(256 << 10), off)             # dirty in the cache (writeback)
if libc.fallocate(fd, 3, off, 256 << 10) != 0:          # PUNCH_HOLE|KEEP_SIZE
    sys.exit("fallocate: " + os.strerror(ctypes.get_errno()))
os.fsync(fd)
os.close(fd)
EOF
z zero "$T/model1" $((20 << 20)) $((256 << 10))
check_lun 1 "punch over dirty data"
pass "PUNCH_HOLE over data dirty in the cache: zeroes, the old data is not written back later"

# --- preallocation inside the LUN is a no-op; beyond the end without KEEP_SIZE it fails
check_eq "plain fallocate inside lun1" "$(z falloc "$M/lun1" plain 0 4096)" ok
got=$(python3 -c 'import os, sys; fd = os.open(sys.argv[1], os.O_RDWR); os.posix_fallocate(fd, 0, 4096); print("ok")' "$M/lun1" 2>&1)
check_eq "posix_fallocate inside lun1" "$got" ok
check_lun 1 "after preallocation"

# --- LUN 2 without thin provisioning
got=$(z falloc "$M/lun2" punch $((4 << 20)) $((1 << 20)))
check_eq "PUNCH_HOLE on lun2 (no thin provisioning)" "$got" EOPNOTSUPP
punch_msg=$(fallocate --punch-hole --keep-size -o 0 -l 4096 "$M/lun2" 2>&1) &&
	fail "fallocate(1) --punch-hole on lun2 succeeded"
log "fallocate(1) --punch-hole on lun2: $punch_msg"
check_lun 2 "failed punch changed nothing"
b0=$(blocks "$T/lun2.img")
falloc_ok 2 zero $(((4 << 20) + 333)) $(((1 << 20) + 1))
out=$(fallocate --zero-range --keep-size -o $((6 << 20)) -l $((1 << 20)) "$M/lun2" 2>&1) ||
	fail "fallocate(1) --zero-range on lun2: $out"
z zero "$T/model2" $((6 << 20)) $((1 << 20))
check_lun 2 "zero-range without thin provisioning"
b1=$(blocks "$T/lun2.img")
((b1 >= b0 - 64)) || fail "ZERO_RANGE on a LUN without thin provisioning deallocated its backing file ($b0 -> $b1 blocks)"
pass "no thin provisioning: PUNCH_HOLE fails with EOPNOTSUPP, ZERO_RANGE writes zeroes"

# --- SEEK_DATA / SEEK_HOLE
offs=(0 $((4 << 20)) $((5 << 20)) $(((6 << 20) - 512)) $((6 << 20)) $((8 << 20)) $(((8 << 20) + 4096))
	$((9 << 20)) $(((12 << 20) + 777)) $((13 << 20)) $((20 << 20)) $(((20 << 20) + 4096))
	$((32 << 20)) $(((64 << 20) - 512)))
for ((o = 0; o < (64 << 20); o += (1 << 20) + 4096)); do offs+=("$o"); done
mnt=$(z seek "$M/lun1" "${offs[@]}")
if ((HOLES)); then
	back=$(z seek "$T/lun1.img" "${offs[@]}")
	[[ $mnt == "$back" ]] || fail "SEEK_DATA/SEEK_HOLE (offset data hole) of lun1 differ from its backing file (backing, mount):
$(diff <(echo "$back") <(echo "$mnt") | sed 's/^/  /')"
	got=$(z seek "$M/lun1" 0 $((4 << 20)) | tr '\n' ' ')
	check_eq "SEEK_DATA/SEEK_HOLE of lun1 at 0 and 4 MiB" "$got" "0 0 $((4 << 20)) $((4 << 20)) $((6 << 20)) $((4 << 20)) "
fi
got=$(z seek "$M/lun1" $((64 << 20)) | tr '\n' ' ')
check_eq "SEEK_DATA/SEEK_HOLE of lun1 at its size" "$got" "$((64 << 20)) ENXIO ENXIO "
pass "thin LUN: SEEK_DATA/SEEK_HOLE agree with the backing file at ${#offs[@]} offsets"

# Data not yet written back is data: punch [40, 48) MiB, then write 4 KiB at 44 MiB and,
# before fsync or close, seek from 40 MiB.
falloc_ok 1 punch $((40 << 20)) $((8 << 20))
if ((HOLES)); then
	got=$(z seek "$M/lun1" $((40 << 20)) | tr '\n' ' ')
	check_eq "SEEK_DATA/SEEK_HOLE of lun1 at 40 MiB after the punch" "$got" "$((40 << 20)) $((48 << 20)) $((40 << 20)) "
	got=$(z dirtyseek "$M/lun1" $((44 << 20)) 4096 $((40 << 20)))
	data=${got% *}
	[[ $data == $((44 << 20)) ]] || fail "SEEK_DATA from 40 MiB with 4 KiB dirty at 44 MiB (not yet written back): got '$data', want $((44 << 20)) (the dirty data is skipped: 'cp --sparse' would lose it)"
fi
pass "SEEK_DATA sees data still dirty in the cache"

# LUN 2 (no thin provisioning) has no holes, even where its backing file has one.
got=$(z seek "$M/lun2" 0 $((4 << 20)) | tr '\n' ' ')
check_eq "SEEK_DATA/SEEK_HOLE of lun2 (no thin provisioning) at 0 and 4 MiB" "$got" \
	"0 0 ${SIZE[2]} $((4 << 20)) $((4 << 20)) ${SIZE[2]} "
pass "no thin provisioning: SEEK_HOLE returns the size"
iscsifs_umount_ok "$M"
