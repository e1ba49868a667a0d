#!/bin/bash
# Proves byte-exact I/O in every cache mode: random unaligned writes (sub-block, across
# 64 KiB cache blocks, up to and across the end of odd-sized LUNs, 512 and 4096 B blocks)
# land at the right place of the target's backing file (checked directly, after fsync,
# after each write in writethrough/none, and after unmount); reads past the end give 0
# bytes; writes past the end fail with ENOSPC/EFBIG; writes beyond 2 TiB of a 3 TiB LUN
# land at their offset (no 32-bit LBA truncation).
source "$(dirname "$0")/lib.sh"
requires python3

IQN=iqn.2026-11.org.iscsifs.test:io
: "${SEED:=$RANDOM}"
: "${IO_OPS:=300}"
log "SEED=$SEED IO_OPS=$IO_OPS (set SEED to reproduce)"
tgt_start
tgt_standard "$IQN"
for n in 1 2 4 5; do
	fill_random "${LUN_FILE[n]}"
done
M=$T/mnt

cat >"$T/randio.py" <<'EOF'
# randio.py SEED OPS MODE SHADOW_DIR MNT:BACKING:SIZE:BS ...
# Random writes and reads through the mount against an in-memory model of each LUN
# (loaded from the backing file); checks the backing file against the model after each
# write when MODE is writethrough/none, and after fsync always. Writes the model to
# SHADOW_DIR/<name>.model for the shell to cmp after unmount.
import errno, os, random, sys

seed, nops, mode, shadow_dir = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
rnd = random.Random(seed)
CB = 65536
failures = 0


def fail(msg):
    global failures
    failures += 1
    print("FAIL: " + msg, flush=True)
    if failures >= 10:
        sys.exit(1)


def first_diff(a, b):
    n, step = min(len(a), len(b)), 65536
    for c in range(0, n, step):
        if a[c:c + step] != b[c:c + step]:
            for i in range(c, min(c + step, n)):
                if a[i] != b[i]:
                    return i
    return n if len(a) != len(b) else -1


def count_diff(a, b):
    n, step, total = min(len(a), len(b)), 65536, abs(len(a) - len(b))
    for c in range(0, n, step):
        if a[c:c + step] != b[c:c + step]:
            total += sum(1 for x, y in zip(a[c:c + step], b[c:c + step]) if x != y)
    return total


def compare(what, got, want, base, oplog):
    if got == want:
        return True
    i = first_diff(got, want)
    off = base + i
    last = [o for o in oplog if o[1] <= off < o[1] + o[2]]
    fail("%s: %d of %d bytes differ, first at offset %d (0x%x): got %s, want %s; "
         "last write covering it: %s" % (
             what, count_diff(got, want),
             len(want), off, off, got[i:i + 8].hex(), want[i:i + 8].hex(),
             last[-1] if last else "none (never written)"))
    return False


def run(mnt, backing, size, bs):
    name = os.path.basename(mnt)
    with open(backing, "rb") as f:
        model = bytearray(f.read())
    assert len(model) == size, (backing, len(model), size)
    fd = os.open(mnt, os.O_RDWR)
    bfd = os.open(backing, os.O_RDONLY)
    oplog = []  # (op#, offset, length, kind)
    nblocks = size // CB
    for i in range(nops):
        kind = rnd.choice(["rand", "small", "small", "cross64k", "cross64k", "end",
                           "cross_end", "read", "read_end"])
        if kind == "rand":
            off = rnd.randrange(size)
            length = min(rnd.randint(1, 3 * CB), size - off)
        elif kind == "small":
            off = rnd.randrange(size)
            length = min(rnd.randint(1, bs + 7), size - off)
        elif kind == "cross64k":
            k = rnd.randint(1, max(1, nblocks - 1)) * CB
            before = rnd.randint(1, min(k, bs + 100))
            off = k - before
            length = min(before + rnd.randint(1, CB + 3), size - off)
        elif kind == "end":
            r = rnd.randint(1, min(size, CB + 5000))
            off = size - r
            length = rnd.randint(1, r)
        elif kind == "cross_end":
            off = size - rnd.randint(1, 5000)
            length = (size - off) + rnd.randint(1, 5000)
        elif kind == "read":
            off = rnd.randrange(size)
            length = rnd.randint(1, 3 * CB)
            got = os.pread(fd, length, off)
            want = bytes(model[off:off + length])
            compare("%s op %d read(%d, %d)" % (name, i, off, length), got, want, off, oplog)
            continue
        else:  # read_end: a read that crosses or starts past the end
            off = size - rnd.randint(-5000, 5000)
            length = rnd.randint(1, 10000)
            got = os.pread(fd, length, off)
            want = bytes(model[off:off + length]) if off < size else b""
            compare("%s op %d read(%d, %d) at the end" % (name, i, off, length),
                    got, want, off, oplog)
            continue

        data = rnd.randbytes(length)
        try:
            n = os.pwrite(fd, data, off)
        except OSError as e:
            if kind == "cross_end" and e.errno in (errno.ENOSPC, errno.EFBIG):
                n = 0
            else:
                fail("%s op %d pwrite(%d, %d) [%s]: %s" % (name, i, off, length, kind, e))
                continue
        want_n = min(length, size - off)
        if kind == "cross_end":
            if n not in (0, want_n):
                fail("%s op %d pwrite(%d, %d) across the end returned %d, want %d (short "
                     "write up to the end) or ENOSPC/EFBIG" % (name, i, off, length, n, want_n))
        elif n != length:
            fail("%s op %d pwrite(%d, %d) [%s] returned %d" % (name, i, off, length, kind, n))
        if n > 0:
            model[off:off + n] = data[:n]
            oplog.append((i, off, n, kind))
        if mode in ("writethrough", "none") and n > 0:
            # write() returned: the data must already be on the target.
            compare("%s op %d pwrite(%d, %d) [%s] in %s mode: backing file right after "
                    "write()" % (name, i, off, n, kind, mode),
                    os.pread(bfd, n, off), bytes(model[off:off + n]), off, oplog)

    # Past the end: reads give nothing, writes fail.
    for off in (size, size + 1, size + 12345):
        got = os.pread(fd, 4096, off)
        if got != b"":
            fail("%s: pread(4096, %d) past the end (size %d) returned %d bytes" %
                 (name, off, size, len(got)))
    for off in (size, size + 4096):
        try:
            n = os.pwrite(fd, b"x" * 512, off)
            fail("%s: pwrite(512, %d) past the end returned %d, want ENOSPC/EFBIG" %
                 (name, off, n))
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EFBIG):
                fail("%s: pwrite past the end failed with %s, want ENOSPC/EFBIG" %
                     (name, errno.errorcode.get(e.errno, e.errno)))

    os.fsync(fd)
    compare("%s backing file after fsync (%s)" % (name, mode),
            os.pread(bfd, size, 0), bytes(model), 0, oplog)
    compare("%s read back through the mount after fsync (%s)" % (name, mode),
            os.pread(fd, size, 0), bytes(model), 0, oplog)
    os.close(fd)
    os.close(bfd)
    with open(os.path.join(shadow_dir, name + ".model"), "wb") as f:
        f.write(model)
    print("%s: %d writes, %d bytes written, %s: ok" % (
        name, len(oplog), sum(o[2] for o in oplog), mode), flush=True)


for spec in sys.argv[5:]:
    mnt, backing, size, bs = spec.split(":")
    run(mnt, backing, int(size), int(bs))
sys.exit(1 if failures else 0)
EOF

for mode in writeback writethrough none; do
	iscsifs_mount "$(tgt_url "$IQN")" "$M" -o "cache=$mode"
	specs=()
	for n in 1 2 4 5; do
		specs+=("$M/lun$n:${LUN_FILE[n]}:${LUN_SIZE[n]}:${LUN_BS[n]}")
	done
	run_bounded 240 python3 "$T/randio.py" "$((SEED + ${#mode}))" "$IO_OPS" "$mode" "$T" \
		"${specs[@]}" || fail "random I/O in cache=$mode (SEED=$SEED)"
	iscsifs_umount_ok "$M"
	for n in 1 2 4 5; do
		check_cmp "${LUN_FILE[n]}" "$T/lun$n.model"
	done
	pass "cache=$mode: random unaligned I/O matches the backing files, before and after unmount"
done

# --- the 3 TiB LUN: offsets past 2 TiB (LBA >= 2^32) must not wrap.
iscsifs_mount "$(tgt_url "$IQN" 6)" "$M"
run_bounded 120 python3 - "$M/lun6" "${LUN_FILE[6]}" "${LUN_SIZE[6]}" "$SEED" <<'EOF' ||
import errno, os, random, sys
mnt, backing, size, seed = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
rnd = random.Random(seed)
T = 1 << 40
writes = [(2 * T - 300, 1000),          # across LBA 2^32 (512 B blocks)
          (2 * T + 12345, 70000),       # unaligned, across a 64 KiB block
          (2 * T + T // 2 + 1, 511),
          (3 * T - 4096 - 7, 4096 + 7),  # up to the very end
          (T + 3, 5)]
bad = 0
fd = os.open(mnt, os.O_RDWR)
datas = []
for off, n in writes:
    d = rnd.randbytes(n)
    datas.append(d)
    got = os.pwrite(fd, d, off)
    if got != n:
        print("FAIL: pwrite(%d, %d) returned %d" % (off, n, got)); bad += 1
os.fsync(fd)
bfd = os.open(backing, os.O_RDONLY)
for (off, n), d in zip(writes, datas):
    b = os.pread(bfd, n, off)
    if b != d:
        print("FAIL: backing file at %d (%d bytes) differs from what was written there" %
              (off, n)); bad += 1
    m = os.pread(fd, n, off)
    if m != d:
        print("FAIL: reading back %d bytes at %d through the mount differs" % (n, off)); bad += 1
    if off >= 2 * T:
        alias = off - 2 * T  # where a 32-bit LBA would have put it
        if os.pread(bfd, n, alias) == d:
            print("FAIL: data written at %d also appears at %d: LBA truncated to 32 bits" %
                  (off, alias)); bad += 1
if os.pread(fd, 10, size) != b"":
    print("FAIL: read at the end of the 3 TiB LUN returned data"); bad += 1
print("3 TiB LUN: %d writes checked" % len(writes))
sys.exit(1 if bad else 0)
EOF
	fail "writes past 2 TiB of the 3 TiB LUN (SEED=$SEED)"
iscsifs_umount_ok "$M"
pass "3 TiB LUN: writes past 2 TiB land at their offsets"
