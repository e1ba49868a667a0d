#!/bin/bash
# Proves the file semantics of the README: truncate to the current size succeeds, to any
# other size fails with EPERM (dd without conv=notrunc, or a shell '>', open with O_TRUNC
# and write from offset 0, the size and the bytes after unchanged, as on a block device);
# chmod/chown fail with EPERM; reads at or past the
# end return 0 bytes, a write at the end fails with ENOSPC and one crossing it is short;
# -o sessions=4 logs in 4 sessions that all carry I/O and pass a 4-job fio crc32c
# randrw run; -o ro refuses writes with EROFS; `mount -t fuse.iscsifs URL MNT -o
# cache=writethrough` (mount.fuse3 running iscsifs from PATH) mounts with that cache
# mode and `umount MNT` unmounts it and ends the daemon.
source "$(dirname "$0")/lib.sh"
requires python3 fio truncate mount.fuse3

IQN=iqn.2026-11.org.iscsifs.test:semantics
tgt_start
tgt_target 1 "$IQN"
S1=67108864
S2=$((10485760 + 3 * 4096))
tgt_sparse "$T/lun1.img" $S1
tgt_sparse "$T/lun2.img" $S2
tgt_lun 1 1 "$T/lun1.img"
tgt_lun 1 2 "$T/lun2.img" 4096
fill_random "$T/lun1.img"
fill_random "$T/lun2.img"
cp "$T/lun1.img" "$T/model1"
cp "$T/lun2.img" "$T/model2"
M=$T/mnt
URL=$(tgt_url "$IQN")

iscsifs_mount "$URL" "$M"

# --- size never changes
for n in 1 2; do
	f=$M/lun$n
	size=$(stat -c %s "$f")
	out=$(truncate -s "$size" "$f" 2>&1) || fail "truncate -s $size (its size) $f failed: $out"
	got=$(python3 - "$f" "$size" <<'EOF'
import errno, os, sys
path, size = sys.argv[1], int(sys.argv[2])
res = []
def t(what, fn):
    try:
        fn()
        res.append(what + ":ok")
    except OSError as e:
        res.append(what + ":" + errno.errorcode.get(e.errno, str(e.errno)))
t("same", lambda: os.truncate(path, size))
fd = os.open(path, os.O_RDWR)
t("fsame", lambda: os.ftruncate(fd, size))
t("smaller", lambda: os.truncate(path, size - 512))
t("larger", lambda: os.truncate(path, size + 4096))
t("zero", lambda: os.ftruncate(fd, 0))
os.close(fd)
print(" ".join(res), os.stat(path).st_size)
EOF
	)
	check_eq "truncate of lun$n" "$got" "same:ok fsame:ok smaller:EPERM larger:EPERM zero:EPERM $size"
	expect_fail_msg "Operation not permitted" truncate -s 1M "$f"
done
# dd without conv=notrunc opens with O_TRUNC: as on a block device, it writes from 0
# and the size and the bytes after what it wrote stay (test_feat_writeidioms.sh has more).
dd if=/dev/zero of="$M/lun1" bs=4k count=1 status=none || fail "dd without conv=notrunc to lun1 failed"
dd if=/dev/zero of="$T/model1" bs=4k count=1 conv=notrunc status=none
# With seek=N, dd ftruncates to N blocks after opening: that fails (EPERM, reported), and
# GNU dd (coreutils 9.1) then writes anyway and exits 0 - its choice; the size stays.
out=$(dd if=/dev/zero of="$M/lun1" bs=4k count=1 seek=1 2>&1) || true
grep -q "failed to truncate to 4096 bytes.*Operation not permitted" <<<"$out" ||
	fail "dd seek=1 without conv=notrunc: no 'failed to truncate ... Operation not permitted': $out"
dd if=/dev/zero of="$T/model1" bs=4k count=1 seek=1 conv=notrunc status=none
sh -c 'echo overwritten > "$1"' sh "$M/lun1" || fail "echo overwritten > lun1 failed"
echo overwritten | dd of="$T/model1" conv=notrunc status=none
dd if=/dev/zero of="$M/lun1" bs=4k count=1 seek=2 conv=notrunc,fsync status=none ||
	fail "dd conv=notrunc to lun1 failed"
dd if=/dev/zero of="$T/model1" bs=4k count=1 seek=2 conv=notrunc status=none
check_cmp "$T/lun1.img" "$T/model1"
check_eq "size of lun1 after all that" "$(stat -c %s "$M/lun1")" $S1
pass "truncate to the size succeeds, any other size fails with EPERM; dd without notrunc and '>' write from 0, size kept"

# --- modes and owners are fixed; times are accepted
expect_fail_msg "Operation not permitted" chmod 644 "$M/lun1"
expect_fail_msg "Operation not permitted" chown 1:1 "$M/lun1"
check_eq "mode and owner of lun1" "$(stat -c '%a %u' "$M/lun1")" "600 $(id -u)"
touch "$M/lun1" || fail "touch lun1 failed"
pass "chmod and chown fail with EPERM; touch works"

# --- end of file
got=$(python3 - "$M/lun2" $S2 <<'EOF'
import errno, os, sys
path, size = sys.argv[1], int(sys.argv[2])
fd = os.open(path, os.O_RDWR)
out = []
def w(what, fn):
    try:
        out.append("%s:%s" % (what, fn()))
    except OSError as e:
        out.append("%s:%s" % (what, errno.errorcode.get(e.errno, str(e.errno))))
w("read@size", lambda: len(os.pread(fd, 4096, size)))
w("read@size+1M", lambda: len(os.pread(fd, 4096, size + (1 << 20))))
w("read@size-10", lambda: len(os.pread(fd, 4096, size - 10)))
os.lseek(fd, 0, os.SEEK_END)
w("read@SEEK_END", lambda: len(os.read(fd, 4096)))
w("write@size", lambda: os.pwrite(fd, b"x" * 4096, size))
w("write@size+1M", lambda: os.pwrite(fd, b"x" * 512, size + (1 << 20)))
w("write@size-100", lambda: os.pwrite(fd, b"E" * 4096, size - 100))
w("write@size-4096", lambda: os.pwrite(fd, b"F" * 4096, size - 4096))
os.fsync(fd)
os.close(fd)
print(" ".join(out))
EOF
)
check_eq "I/O at the end of lun2" "$got" \
	"read@size:0 read@size+1M:0 read@size-10:10 read@SEEK_END:0 write@size:ENOSPC write@size+1M:ENOSPC write@size-100:100 write@size-4096:4096"
python3 -c 'import sys; f = open(sys.argv[1], "r+b"); f.seek(int(sys.argv[2]) - 4096); f.write(b"F" * 4096)' "$T/model2" $S2
check_cmp "$T/lun2.img" "$T/model2"
# dd across the end: writes what fits, then says why it stopped.
expect_fail_msg "No space left on device" dd if=/dev/zero of="$M/lun2" bs=4096 seek=$((S2 / 4096 - 1)) count=2 conv=notrunc
python3 -c 'import sys; f = open(sys.argv[1], "r+b"); f.seek(int(sys.argv[2]) - 4096); f.write(bytes(4096))' "$T/model2" $S2
check_cmp "$T/lun2.img" "$T/model2"
pass "reads at/after the end return 0 bytes, writes at/after it ENOSPC, a write across it is short"
iscsifs_umount_ok "$M"

# --- -o sessions=4: commands spread over 4 sessions; data verifies
iscsifs_mount "$URL" "$M" -o sessions=4
fioargs=(--filename="$M/lun1" --rw=randrw --bsrange=4k-128k --size=16M --numjobs=4
	--offset_increment=16M --verify=crc32c --do_verify=1 --verify_fatal=1
	--randrepeat=1 --randseed=4343)
if python3 -c 'import os, sys; os.close(os.open(sys.argv[1], os.O_RDWR | os.O_DIRECT))' "$M/lun1" 2>/dev/null; then
	fioargs+=(--ioengine=libaio --iodepth=8 --direct=1)
else
	fioargs+=(--ioengine=psync)
fi
rc=0
(cd "$T" && run_bounded 240 fio --name=sessions4 --output="$T/fio.out" "${fioargs[@]}" \
	>/dev/null 2>"$T/fio.err") || rc=$?
if ((rc != 0)) || grep -qE 'verify: bad|verify failed|err=[ ]*[1-9]' "$T/fio.out"; then
	tail -n 40 "$T/fio.out" "$T/fio.err" >&2
	fail "fio with -o sessions=4 failed (exit $rc)"
fi
log "fio: $(grep -oE '(READ|WRITE): bw=[^,]*' "$T/fio.out" | tr '\n' ' ')"
got=$(python3 - "$M/.iscsifs/stats.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
print(" ".join("%d:%s:%s" % (s["index"], s["state"], "busy" if s["commands"] >= 100 else "idle(%d)" % s["commands"])
               for s in sorted(d["sessions"], key=lambda s: s["index"])))
EOF
)
check_eq "sessions in stats.json (index:state:commands >= 100)" "$got" \
	"0:logged-in:busy 1:logged-in:busy 2:logged-in:busy 3:logged-in:busy"
check_eq "session_up lines in metrics" "$(grep -c '^iscsifs_session_up{.*} 1$' "$M/.iscsifs/metrics")" 4
iscsifs_umount_ok "$M"
# What fio wrote is on the target.
rc=0
(cd "$T" && run_bounded 240 fio --name=sessions4 --output="$T/fio2.out" \
	"${fioargs[@]/#--filename=*/--filename=$T/lun1.img}" --verify_only=1 \
	--ioengine=psync --direct=0 >/dev/null 2>"$T/fio2.err") || rc=$?
if ((rc != 0)) || grep -qE 'verify: bad|verify failed|err=[ ]*[1-9]' "$T/fio2.out"; then
	tail -n 40 "$T/fio2.out" "$T/fio2.err" >&2
	fail "fio's data does not verify from the backing file after unmount (exit $rc)"
fi
pass "-o sessions=4: 4 sessions logged in and busy, fio 4-job randrw crc32c verifies (mount and backing)"

# --- -o ro
cp "$T/lun1.img" "$T/before-ro"
iscsifs_mount "$URL" "$M" -o ro
got=$(python3 - "$M/lun1" <<'EOF'
import errno, os, sys
out = []
for name, flags in (("wronly", os.O_WRONLY), ("rdwr", os.O_RDWR), ("trunc", os.O_WRONLY | os.O_TRUNC)):
    try:
        os.close(os.open(sys.argv[1], flags))
        out.append(name + ":ok")
    except OSError as e:
        out.append(name + ":" + errno.errorcode.get(e.errno, str(e.errno)))
fd = os.open(sys.argv[1], os.O_RDONLY)
out.append("read:%d" % len(os.pread(fd, 4096, 4096)))
os.close(fd)
print(" ".join(out))
EOF
)
check_eq "opens of lun1 on a -o ro mount" "$got" "wronly:EROFS rdwr:EROFS trunc:EROFS read:4096"
expect_fail_msg "Read-only file system" dd if=/dev/zero of="$M/lun1" bs=4k count=1 conv=notrunc
check_eq "mode of lun1 with -o ro" "$(stat -c %a "$M/lun1")" 400
iscsifs_umount_ok "$M"
check_cmp "$T/lun1.img" "$T/before-ro"
pass "-o ro: opening for write fails with EROFS, reads work"

# --- mount -t fuse.iscsifs (as /etc/fstab does), iscsifs found on the helper's PATH.
# mount(8) drops PATH from the environment of its helpers (util-linux sanitize_env), so
# mount.fuse3's `sh -c iscsifs ...` searches sh's default PATH, which starts with
# /usr/local/sbin. In a private mount namespace (unshare -m) a directory holding only
# `iscsifs -> $ISCSIFS` is bind-mounted there; the FUSE mount, its checks and the umount
# all happen inside. Where unshare is not allowed, mount.fuse3 (the helper mount(8) runs)
# is called directly with that directory prepended to PATH.
mkdir -p "$T/bin" "$T/fstab-mnt"
ln -s "$ISCSIFS" "$T/bin/iscsifs"
FM=$T/fstab-mnt
cat >"$T/fstab.sh" <<'EOF2'
# fstab.sh MODE BIN URL MNT BACKING: mount, check, umount; prints key=value lines.
set -u
mode=$1 bin=$2 url=$3 mnt=$4 backing=$5
daemon_pid()
{
	local p
	for p in /proc/[0-9]*; do
		[[ $(readlink "$p/exe" 2>/dev/null) == "$(readlink -f "$bin/iscsifs")" ]] || continue
		tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -qF -- " $mnt" && echo "${p#/proc/}"
	done
	return 0
}
cleanup()
{
	if awk -v m="$mnt" '$2 == m { f = 1 } END { exit !f }' /proc/mounts; then
		timeout 10 umount "$mnt" 2>/dev/null || timeout 10 umount -l "$mnt" 2>/dev/null
	fi
	local p
	for p in $(daemon_pid); do kill -KILL "$p" 2>/dev/null; done
}
trap cleanup EXIT
if [[ $mode == ns ]]; then
	mount --bind "$bin" /usr/local/sbin || { echo "error=bind mount failed"; exit 1; }
	out=$(timeout -k 5 60 mount -t fuse.iscsifs "$url" "$mnt" -o cache=writethrough 2>&1)
else
	out=$(PATH=$bin:$PATH timeout -k 5 60 mount.fuse3 "$url" "$mnt" -t fuse.iscsifs -o cache=writethrough 2>&1)
fi
echo "mount_rc=$? mount_out=${out//$'\n'/ }"
echo "fstype=$(awk -v m="$mnt" '$2 == m { print $3 }' /proc/mounts)"
pid=$(daemon_pid)
echo "daemon=$pid $(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)"
echo "size=$(stat -c %s "$mnt/lun1" 2>&1)"
# cache=writethrough: the target has a write as soon as write() returns, before close.
echo "writethrough=$(python3 - "$mnt/lun1" "$backing" 2>&1 <<'EOF3'
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
data = os.urandom(8192)
os.pwrite(fd, data, 5 << 20)
with open(sys.argv[2], "rb") as f:
    f.seek(5 << 20)
    on_target = f.read(8192) == data
os.close(fd)
print("on target before close" if on_target else "not on target before close")
EOF3
)"
out=$(timeout -k 5 60 umount "$mnt" 2>&1)
echo "umount_rc=$? umount_out=${out//$'\n'/ }"
echo "mounted_after=$(awk -v m="$mnt" '$2 == m { print "yes" }' /proc/mounts)"
alive() # a zombie has ended (its parent, init here, may not have reaped it yet)
{
	local st
	st=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	st=${st##*) }
	[[ ${st%% *} != [ZX] ]]
}
for ((i = 0; i < 200; i++)); do
	[[ -n $pid ]] && alive "$pid" || break
	sleep 0.1
done
echo "daemon_after=$([[ -n $pid ]] && alive "$pid" && echo running)"
EOF2
if unshare -m true 2>/dev/null; then
	how="mount -t fuse.iscsifs in a private mount namespace"
	res=$(timeout -k 5 120 unshare -m bash "$T/fstab.sh" ns "$T/bin" "$URL" "$FM" "$T/lun1.img" 2>&1) || true
else
	how="mount.fuse3 -t fuse.iscsifs (unshare -m not allowed here)"
	res=$(timeout -k 5 120 bash "$T/fstab.sh" direct "$T/bin" "$URL" "$FM" "$T/lun1.img" 2>&1) || true
fi
log "$how:"$'\n'"$res"
field() { sed -n "s/^$1=//p" <<<"$res" | head -n 1; }
[[ $(field mount_rc) == "0 "* ]] || fail "$how $URL $FM -o cache=writethrough failed: $(field mount_rc)"
check_eq "type of the mount" "$(field fstype)" fuse.iscsifs
[[ $(field daemon) == [0-9]*" -o "*cache=writethrough* ]] || fail "iscsifs daemon of the mount: '$(field daemon)', want its pid and '-o ...cache=writethrough'"
check_eq "size of lun1 through the mount" "$(field size)" $S1
check_eq "cache=writethrough" "$(field writethrough)" "on target before close"
[[ $(field umount_rc) == "0 "* ]] || fail "umount $FM failed: $(field umount_rc)"
check_eq "mounted after umount" "$(field mounted_after)" ""
check_eq "daemon after umount (20 s)" "$(field daemon_after)" ""
pass "$how URL MNT -o cache=writethrough works; umount unmounts and ends the daemon"
