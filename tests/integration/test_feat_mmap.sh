#!/bin/bash
# Proves what mmap does on LUN files (issue 8 §6): with the default cache a shared
# writable mapping works (bytes stored through it and msync'ed are on the target);
# with -o cache=none the files are direct I/O, and on a kernel that offers
# FUSE_DIRECT_IO_ALLOW_MMAP (6.6+) iscsifs asks for it (libfuse 3.14 cannot) so a
# shared writable mapping works too: msync puts its bytes on the target and read()
# sees them; on older kernels mmap(MAP_SHARED) fails with ENODEV, which the daemon says
# once in its log at notice level (FUSE never tells it about mmap, so it says so at the
# first open), while MAP_PRIVATE reads the LUN's data.
source "$(dirname "$0")/lib.sh"
requires python3

IQN=iqn.2026-11.org.iscsifs.test:mmap
tgt_start
tgt_target 1 "$IQN"
tgt_sparse "$T/lun1.img" 16M
fill_random "$T/lun1.img"
tgt_lun 1 1 "$T/lun1.img"
URL=$(tgt_url "$IQN")
M=$T/mnt

# mmap_try FILE: "shared:<ok|errno> private:<first 8 bytes at 1 MiB, hex>"; with
# shared:ok it has stored "mmap-ok!" at 1 MiB through the shared mapping and msync'ed it.
mmap_try()
{
	python3 - "$1" <<'EOF'
import errno, mmap, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
out = []
try:
    m = mmap.mmap(fd, 2 << 20, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    m[1 << 20:(1 << 20) + 8] = b"mmap-ok!"
    m.flush()
    m.close()
    out.append("shared:ok")
except OSError as e:
    out.append("shared:" + errno.errorcode.get(e.errno, str(e.errno)))
m = mmap.mmap(fd, 2 << 20, mmap.MAP_PRIVATE, mmap.PROT_READ)
out.append("private:" + m[1 << 20:(1 << 20) + 8].hex())
m.close()
os.close(fd)
print(" ".join(out))
EOF
}

iscsifs_mount "$URL" "$M"
check_eq "mmap of lun1 (default cache)" "$(mmap_try "$M/lun1")" "shared:ok private:$(printf 'mmap-ok!' | od -An -tx1 | tr -d ' \n')"
iscsifs_umount_ok "$M"
check_eq "8 bytes at 1 MiB of lun1.img" "$(dd if="$T/lun1.img" bs=1 skip=1048576 count=8 status=none)" "mmap-ok!"
pass "default cache: a shared writable mapping works and its bytes reach the target"

# cache=none: the files are direct I/O. Where the kernel offers FUSE_DIRECT_IO_ALLOW_MMAP
# (6.6 and later) iscsifs asks for it and a shared mapping works; elsewhere it fails
# with ENODEV and the log says so once.
printf 'zzzzzzzz' | dd of="$T/lun1.img" bs=1 seek=1048576 conv=notrunc status=none
want=$(printf 'zzzzzzzz' | od -An -tx1 | tr -d ' \n')
IFS=. read -r kmaj kmin _ <<<"$(uname -r)"
iscsifs_mount "$URL" "$M" -o cache=none
if ((kmaj > 6 || (kmaj == 6 && kmin >= 6))); then
	check_eq "mmap of lun1 with cache=none (kernel $(uname -r))" "$(mmap_try "$M/lun1")" \
		"shared:ok private:$(printf 'mmap-ok!' | od -An -tx1 | tr -d ' \n')"
	# msync wrote it back: the target has it before close, and read() (direct) sees it.
	check_eq "8 bytes at 1 MiB of lun1.img after msync" \
		"$(dd if="$T/lun1.img" bs=1 skip=1048576 count=8 status=none)" "mmap-ok!"
	check_eq "8 bytes at 1 MiB read through lun1" \
		"$(dd if="$M/lun1" bs=1 skip=1048576 count=8 status=none)" "mmap-ok!"
	check_eq "notices about mmap and cache=none in the log" \
		"$(grep -c 'cache=none: .*mmap(MAP_SHARED)' "$DAEMON_LOG" || true)" 0
	iscsifs_umount_ok "$M"
	pass "cache=none: a shared writable mapping works (FUSE_DIRECT_IO_ALLOW_MMAP), its bytes reach the target"
else
	check_eq "mmap of lun1 with cache=none (kernel $(uname -r))" "$(mmap_try "$M/lun1")" \
		"shared:ENODEV private:$want"
	mmap_try "$M/lun1" >/dev/null
	check_eq "notices about mmap and cache=none in the log" \
		"$(grep -c 'cache=none: .*mmap(MAP_SHARED).*ENODEV.*cache=writethrough' "$DAEMON_LOG" || true)" 1
	iscsifs_umount_ok "$M"
	pass "cache=none on kernel $(uname -r) (< 6.6): MAP_SHARED fails with ENODEV, said once in the log; MAP_PRIVATE reads"
fi
