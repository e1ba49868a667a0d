#!/bin/bash
# Proves the usual ways of writing a disk image work on a LUN file as on a block device
# (issue 8 §3): `dd if=IMG of=LUN` (no conv=notrunc), `cat IMG > LUN`, `pv IMG > LUN`,
# `cp IMG LUN` (and --sparse=always) of a sparse image ending in a hole and of one with a
# hole in the middle, `dd conv=sparse`, and `qemu-img convert -n -O raw` each leave the
# backing file equal to the image from offset 0 to the image's end (holes as zeroes),
# the bytes after it and the size unchanged, also through a partition file and on a
# 4096 B-block LUN; an image larger than the LUN fails with ENOSPC after writing what
# fits; `qemu-img convert` without -n fails (it truncates to 0 first: README) and
# changes nothing; explicit truncates to another size still fail with EPERM.
source "$(dirname "$0")/lib.sh"
requires python3 qemu-img pv sfdisk cp dd

IQN=iqn.2026-11.org.iscsifs.test:writeidioms
tgt_start
tgt_target 1 "$IQN"
S1=67108864
S2=$((33554432 + 3 * 4096))
tgt_sparse "$T/lun1.img" $S1
tgt_sparse "$T/lun2.img" $S2
tgt_sparse "$T/lun3.img" 32M
fill_random "$T/lun1.img"
fill_random "$T/lun2.img"
fill_random "$T/lun3.img"
# lun3: one DOS partition at 1 MiB, 16 MiB long
sfdisk -q "$T/lun3.img" <<EOF
label: dos
start=2048, size=32768, type=83
EOF
tgt_lun 1 1 "$T/lun1.img"
tgt_lun 1 2 "$T/lun2.img" 4096
tgt_lun 1 3 "$T/lun3.img"
for n in 1 2 3; do cp "$T/lun$n.img" "$T/model$n"; done
M=$T/mnt
URL=$(tgt_url "$IQN")

# Images: dense (not a multiple of any block size), sparse ending in a hole, sparse with
# a hole in the middle and data at the end.
python3 - "$T" <<'EOF'
import os, random, sys
t = sys.argv[1]
rnd = random.Random(8)
def image(name, size, extents):
    with open(os.path.join(t, name), "wb") as f:
        f.truncate(size)
        for off, n in extents:
            f.seek(off)
            f.write(rnd.randbytes(n))
image("dense.img", 5 * 2**20 + 1234, [(0, 5 * 2**20 + 1234)])
image("dense2.img", 3 * 2**20 + 77, [(0, 3 * 2**20 + 77)])
image("dense3.img", 2 * 2**20 + 4096, [(0, 2 * 2**20 + 4096)])
image("endhole.img", 8 * 2**20, [(0, 256 * 1024), (2621440, 262144 + 300)])
image("midhole.img", 6 * 2**20 + 512, [(0, 131072), (6 * 2**20 - 65536, 65536 + 512)])
image("big.img", S := 40 * 2**20, [(0, S)])
EOF
# The images are sparse where they should be (cp only skips real holes).
for f in endhole midhole; do
	(($(stat -c %b "$T/$f.img") * 512 < $(stat -c %s "$T/$f.img") / 2)) ||
		skip "$T cannot hold sparse files ($f.img is not sparse)"
done

# apply MODEL IMG [OFFSET]: what the LUN must hold after IMG was written at OFFSET.
apply()
{
	python3 - "$1" "$2" "${3:-0}" <<'EOF'
import sys
model, img, off = sys.argv[1], sys.argv[2], int(sys.argv[3])
data = open(img, "rb").read()
with open(model, "r+b") as f:
    f.seek(off)
    f.write(data)
EOF
}

# step WHAT N IMG [OFFSET]: after WHAT wrote IMG to LUN N (at OFFSET), the backing file
# equals the model and the file kept its size.
step()
{
	apply "$T/model$2" "$T/$3" "${4:-0}"
	check_cmp "$T/lun$2.img" "$T/model$2"
	check_eq "size of lun$2 after $1" "$(stat -c %s "$M/lun$2")" "$(stat -c %s "$T/lun$2.img")"
	log "ok: $1"
}

iscsifs_mount "$URL" "$M"

out=$(dd if="$T/dense.img" of="$M/lun1" bs=1M 2>&1) || fail "dd if=dense.img of=lun1 (no notrunc) failed: $out"
step "dd of=lun1 without conv=notrunc" 1 dense.img
out=$(cp "$T/endhole.img" "$M/lun1" 2>&1) || fail "cp endhole.img lun1 failed: $out"
step "cp of an image ending in a hole" 1 endhole.img
out=$(cp "$T/midhole.img" "$M/lun1" 2>&1) || fail "cp midhole.img lun1 failed: $out"
step "cp of an image with a hole in the middle" 1 midhole.img
sh -c 'cat "$1" > "$2"' sh "$T/dense2.img" "$M/lun1" || fail "cat dense2.img > lun1 failed"
step "cat > lun1" 1 dense2.img
out=$(sh -c 'pv -q "$1" > "$2"' sh "$T/dense3.img" "$M/lun1" 2>&1) || fail "pv dense3.img > lun1 failed: $out"
step "pv > lun1" 1 dense3.img
out=$(cp --sparse=always "$T/endhole.img" "$M/lun1" 2>&1) || fail "cp --sparse=always endhole.img lun1 failed: $out"
step "cp --sparse=always" 1 endhole.img
out=$(dd if="$T/midhole.img" of="$M/lun1" bs=64k conv=sparse 2>&1) || fail "dd conv=sparse midhole.img failed: $out"
step "dd conv=sparse" 1 midhole.img
pass "dd, cp (holes at the end, in the middle, --sparse=always), cat >, pv >, dd conv=sparse: image from 0, rest and size unchanged"

# The same on a 4096 B-block LUN and through a partition file.
out=$(cp "$T/endhole.img" "$M/lun2" 2>&1) || fail "cp endhole.img lun2 failed: $out"
step "cp to the 4096 B-block LUN" 2 endhole.img
out=$(dd if="$T/dense.img" of="$M/lun2" bs=1M 2>&1) || fail "dd dense.img lun2 failed: $out"
step "dd to the 4096 B-block LUN" 2 dense.img
out=$(cp "$T/midhole.img" "$M/lun3-part1" 2>&1) || fail "cp midhole.img lun3-part1 failed: $out"
step "cp to lun3-part1" 3 midhole.img 1048576
check_eq "size of lun3-part1" "$(stat -c %s "$M/lun3-part1")" 16777216
pass "the same on a 4096 B-block LUN and through a partition file (at its offset)"

# An image larger than the LUN: what fits is written, then ENOSPC (as a block device).
expect_fail_msg "No space left on device" dd if="$T/big.img" of="$M/lun2" bs=1M
python3 - "$T/model2" "$T/big.img" <<'EOF'
import sys
size = len(open(sys.argv[1], "rb").read())
data = open(sys.argv[2], "rb").read()[:size]
open(sys.argv[1], "r+b").write(data)
EOF
check_cmp "$T/lun2.img" "$T/model2"
pass "an image larger than the LUN: ENOSPC after writing what fits"

# qemu-img convert: -n writes into the existing LUN; without -n it truncates to 0 first.
out=$(run_bounded 120 qemu-img convert -n -O raw "$T/midhole.img" "$M/lun1" 2>&1) ||
	fail "qemu-img convert -n -O raw midhole.img lun1 failed: $out"
step "qemu-img convert -n" 1 midhole.img
expect_fail_msg "Operation not permitted" qemu-img convert -O raw "$T/dense.img" "$M/lun1"
check_cmp "$T/lun1.img" "$T/model1"
pass "qemu-img convert -n -O raw works; without -n it fails (truncate to 0) and changes nothing"

# Explicit truncates to another size still fail with EPERM, whatever the open flags.
got=$(python3 - "$M/lun1" $S1 <<'EOF'
import errno, os, sys
path, size = sys.argv[1], int(sys.argv[2])
res = []
def t(what, fn):
    try:
        fn()
        res.append(what + ":ok")
    except OSError as e:
        res.append(what + ":" + errno.errorcode.get(e.errno, str(e.errno)))
t("path-smaller", lambda: os.truncate(path, size - 512))
fd = os.open(path, os.O_RDWR)
t("fd-zero", lambda: os.ftruncate(fd, 0))
t("fd-larger", lambda: os.ftruncate(fd, size + 4096))
os.close(fd)
fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
t("trunc-fd-larger", lambda: os.ftruncate(fd, size + 4096))
os.pwrite(fd, b"H" * 4096, 0)
t("trunc-fd-1M", lambda: os.ftruncate(fd, 1 << 20))
os.close(fd)
print(" ".join(res), os.stat(path).st_size)
EOF
)
check_eq "truncates of lun1" "$got" "path-smaller:EPERM fd-zero:EPERM fd-larger:EPERM trunc-fd-larger:EPERM trunc-fd-1M:ok $S1"
# The last one, as on a regular file: 4 KiB of H, zeroes to 1 MiB; the rest unchanged.
python3 -c 'import sys; f = open(sys.argv[1], "r+b"); f.write(b"H" * 4096 + bytes((1 << 20) - 4096))' "$T/model1"
check_cmp "$T/lun1.img" "$T/model1"
pass "truncate to another size fails with EPERM (also past the end on an O_TRUNC file); ftruncate(1M) of an O_TRUNC file marks the image's end"
iscsifs_umount_ok "$M"
for n in 1 2 3; do check_cmp "$T/lun$n.img" "$T/model$n"; done
