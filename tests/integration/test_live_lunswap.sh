#!/bin/bash
# Proves no dirty data of one disk is ever written to another disk that an admin put at
# the same LUN number (the lun-swap fault): with a handle holding 8 MiB of unwritten
# data on lun1, LUN 1 is deleted and another disk (its own backing file and serial) is
# created at LUN 1 - at once, and after a 2 s gap; with the default options and with
# rescan_interval=0; and while a stream of writes and fsyncs runs (tgt answers the
# writes that find the LUN gone with 25/00). Each time the new disk's backing file gets
# none of the old data,
# the writer's fsync or close fails (EIO/ENODEV), the daemon logs that the disk at
# LUN 1 changed or went, and afterwards lun1 is a new file (another inode) showing the
# new disk's data.
source "$(dirname "$0")/lib.sh"
requires python3 stat

IQN=iqn.2026-11.org.iscsifs.test:lunswap
M=$T/mnt
MiB=1048576
tgt_start
tgt_target 1 "$IQN"
URL=$(tgt_url "$IQN")

cat >"$T/writer.py" <<'EOF'
import errno, os, sys, time
path, flag, out = sys.argv[1], sys.argv[2], sys.argv[3]
def say(*a):
    with open(out, "a") as f:
        print(*a, file=f)
fd = os.open(path, os.O_WRONLY)
say("ino", os.fstat(fd).st_ino)
os.pwrite(fd, b"A" * (8 << 20), 0)
say("written")
while not os.path.exists(flag):
    time.sleep(0.05)
for what, f in (("fsync", lambda: os.fsync(fd)), ("close", lambda: os.close(fd))):
    try:
        f()
        say(what, "ok")
    except OSError as e:
        say(what, errno.errorcode.get(e.errno, e.errno))
EOF

# fill FILE BYTES: BYTES of 'N' (the new disk's own data; no 'A' in it)
fill_n() { python3 -c 'import sys; open(sys.argv[1], "r+b").write(b"N" * int(sys.argv[2]))' "$1" "$2"; }

# no_old_data NAME WHEN: the new disk's backing file holds no byte of the old data
no_old_data() { check_eq "$1: bytes of the old disk's data $2" "$(tr -cd A <"$T/new-$1.img" | wc -c)" 0; }

# after_swap NAME INO_OLD: the daemon said LUN 1 changed or went; after a rescan lun1 is
# a new file (another inode) showing the new disk's data, which never gets the old
# data (checked after the rescan and after unmount); LUN 1 is deleted for the next case.
after_swap()
{
	local name=$1 ino_old=$2 out rc=0
	grep -qE "LUN 1: failed for good \((another disk answers at its address|it is gone)" "$DAEMON_LOG" ||
		fail "$name: the daemon did not log that the disk at LUN 1 changed or went"
	out=$(run_bounded 60 "$ISCSIFS" rescan "$M" 2>&1) || fail "$name: iscsifs rescan: $out"
	wait_for 20 test -e "$M/lun1" || fail "$name: lun1 is not there after the rescan: $(ls "$M")"
	[[ $(stat -c %i "$M/lun1") != "$ino_old" ]] ||
		fail "$name: the new disk at LUN 1 got the old file's inode $ino_old"
	check_cmp "$T/new-$name.img" "$M/lun1" $((2 * MiB))
	no_old_data "$name" "on the NEW disk after the rescan"
	iscsifs_umount "$M" || rc=$?
	((rc == 0 || rc == 6)) || fail "$name: unmount: daemon exit status $rc"
	no_old_data "$name" "on the NEW disk after unmount"
	tgt_adm --op delete --mode logicalunit --tid 1 --lun 1 >/dev/null
}

# case NAME GAP MOUNT-OPTIONS
swap_case()
{
	local name=$1 gap=$2 opts=$3 out ino_old
	log "--- $name: gap ${gap}s, -o $opts"
	tgt_sparse "$T/old-$name.img" 64M
	tgt_sparse "$T/new-$name.img" 64M
	fill_n "$T/new-$name.img" $((2 * MiB))
	tgt_adm --op new --mode logicalunit --tid 1 --lun 1 --backing-store "$T/old-$name.img" >/dev/null
	tgt_adm --op update --mode logicalunit --tid 1 --lun 1 --params "scsi_sn=OLD$name" >/dev/null
	iscsifs_mount "$URL" "$M" -o "$opts"
	rm -f "$T/flag" "$T/writer.out"
	python3 "$T/writer.py" "$M/lun1" "$T/flag" "$T/writer.out" &
	local W=$!
	track_pid $W
	wait_for 20 grep -qs written "$T/writer.out" || fail "$name: the writer did not write: $(cat "$T/writer.out" 2>/dev/null)"
	ino_old=$(awk '/^ino/ {print $2}' "$T/writer.out")
	# the admin replaces LUN 1 by another disk, within the write-back delay
	tgt_adm --op delete --mode logicalunit --tid 1 --lun 1 >/dev/null
	if ((gap)); then
		# the write-back runs (and meets the missing LUN) during the gap
		sleep "$gap"
	fi
	tgt_adm --op new --mode logicalunit --tid 1 --lun 1 --backing-store "$T/new-$name.img" >/dev/null
	tgt_adm --op update --mode logicalunit --tid 1 --lun 1 --params "scsi_sn=NEW$name" >/dev/null
	sleep 2 # the write-back delay (dirty_expire=1) has passed: whatever it does, it did
	touch "$T/flag"
	wait_for 60 eval '! pid_alive $W' || fail "$name: the writer did not finish within 60 s"
	wait "$W" || true
	out=$(cat "$T/writer.out")
	log "$name: writer: $(tr '\n' ';' <<<"$out")"
	no_old_data "$name" "on the NEW disk"
	grep -qE '^(fsync|close) (EIO|ENODEV)$' <<<"$out" ||
		fail "$name: neither fsync nor close of the writer reported an error: $out"
	after_swap "$name" "$ino_old"
}

# stream: the LUN is deleted between two writes of a stream (tgt refuses to delete a LUN
# with a command in flight); the writes that find it missing get ILLEGAL REQUEST,
# LOGICAL UNIT NOT SUPPORTED (25/00) from tgt, and must not be retried into the disk
# created at LUN 1 a second later.
stream_case()
{
	local name=stream out ino_old i
	log "--- $name: writes and fsyncs while LUN 1 is replaced"
	tgt_sparse "$T/old-$name.img" 64M
	tgt_sparse "$T/new-$name.img" 64M
	fill_n "$T/new-$name.img" $((2 * MiB))
	tgt_adm --op new --mode logicalunit --tid 1 --lun 1 --backing-store "$T/old-$name.img" >/dev/null
	tgt_adm --op update --mode logicalunit --tid 1 --lun 1 --params "scsi_sn=OLD$name" >/dev/null
	iscsifs_mount "$URL" "$M" -o noop_interval=1,rescan_interval=0
	ino_old=$(stat -c %i "$M/lun1")
	python3 - "$M/lun1" "$T/stream.out" <<'EOF2' &
import errno, os, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY)
t, i, errs, last = time.time(), 0, 0, ""
while time.time() - t < 6:
    try:
        # past the first MiB: no partition table re-probe, only data
        os.pwrite(fd, b"A" * (1 << 20), (4 + i % 32) << 20)
        os.fsync(fd)
    except OSError as e:
        errs += 1
        last = errno.errorcode.get(e.errno, str(e.errno))
    i += 1
try:
    os.close(fd)
except OSError as e:
    errs += 1
    last = errno.errorcode.get(e.errno, str(e.errno))
open(sys.argv[2], "w").write("writes %d errors %d last %s\n" % (i, errs, last))
EOF2
	local W=$!
	track_pid $W
	sleep 1
	for ((i = 0; i < 200; i++)); do
		TGT_IPC_SOCKET=$TGT_IPC_SOCKET timeout -k 2 "$TGT_TIMEOUT" tgtadm -C "$TGT_CPORT" \
			--lld iscsi --op delete --mode logicalunit --tid 1 --lun 1 >/dev/null 2>&1 && break
	done
	((i < 200)) || fail "$name: tgtadm could not delete LUN 1 (always busy)"
	sleep 1
	tgt_adm --op new --mode logicalunit --tid 1 --lun 1 --backing-store "$T/new-$name.img" >/dev/null
	tgt_adm --op update --mode logicalunit --tid 1 --lun 1 --params "scsi_sn=NEW$name" >/dev/null
	wait_for 60 eval '! pid_alive $W' || fail "$name: the writer did not finish within 60 s"
	wait "$W" || true
	out=$(cat "$T/stream.out")
	log "$name: writer: $out"
	no_old_data "$name" "on the NEW disk"
	grep -qE 'errors [1-9][0-9]* last (EIO|ENODEV)$' <<<"$out" ||
		fail "$name: the writer saw no error: $out"
	after_swap "$name" "$ino_old"
}

# blocksize_case NAME HOW: the SAME disk (backing file, serial) comes back exported with
# 4096-byte blocks instead of 512 - `live`: deleted and re-created while mounted (no
# re-login); `relogin`: tgtd restarted so. Its identity pages are unchanged, but every
# LBA now names a place 8 times further in: a write sent with the old block size lands
# elsewhere on the disk. The 8 MiB of 'A' held dirty must never land past 8 MiB.
blocksize_case()
{
	local name=bs-$1 how=$1 out rc=0 n img
	log "--- $name: LUN 1 comes back with 4096-byte blocks ($how)"
	img=$T/old-$name.img
	tgt_sparse "$img" 128M
	tgt_adm --op new --mode logicalunit --tid 1 --lun 1 --backing-store "$img" >/dev/null
	tgt_adm --op update --mode logicalunit --tid 1 --lun 1 --params "scsi_sn=BS$how" >/dev/null
	iscsifs_mount "$URL" "$M" -o noop_interval=1,rescan_interval=0
	rm -f "$T/flag" "$T/writer.out"
	python3 "$T/writer.py" "$M/lun1" "$T/flag" "$T/writer.out" &
	local W=$!
	track_pid $W
	wait_for 20 grep -qs written "$T/writer.out" || fail "$name: the writer did not write: $(cat "$T/writer.out" 2>/dev/null)"
	if [[ $how == live ]]; then
		tgt_adm --op delete --mode logicalunit --tid 1 --lun 1 >/dev/null
	else
		tgt_kill9
		printf '%s\n' "--op new --mode target --tid 1 --targetname $IQN" \
			"--op new --mode logicalunit --tid 1 --lun 1 --backing-store $img --blocksize 4096" \
			"--op update --mode logicalunit --tid 1 --lun 1 --params scsi_sn=BS$how" \
			"--op bind --mode target --tid 1 --initiator-address ALL" >"$T/tgt/config.log"
		tgt_restart
	fi
	if [[ $how == live ]]; then
		tgt_adm --op new --mode logicalunit --tid 1 --lun 1 --backing-store "$img" --blocksize 4096 >/dev/null
		tgt_adm --op update --mode logicalunit --tid 1 --lun 1 --params "scsi_sn=BS$how" >/dev/null
	fi
	sleep 2 # the write-back delay (dirty_expire=1) has passed: whatever it does, it did
	touch "$T/flag"
	wait_for 60 eval '! pid_alive $W' || fail "$name: the writer did not finish within 60 s"
	wait "$W" || true
	out=$(cat "$T/writer.out")
	log "$name: writer: $(tr '\n' ';' <<<"$out")"
	grep -qE '^(fsync|close) (EIO|ENODEV)$' <<<"$out" ||
		fail "$name: neither fsync nor close of the writer reported an error: $out"
	grep -qE "LUN 1.*(block size changed)" "$DAEMON_LOG" ||
		fail "$name: the daemon did not log that LUN 1's block size changed"
	iscsifs_umount "$M" || rc=$?
	((rc == 0 || rc == 6)) || fail "$name: unmount: daemon exit status $rc"
	n=$(tail -c +$((8 * MiB + 1)) "$img" | tr -cd A | wc -c)
	check_eq "$name: bytes of the data written below 8 MiB found past 8 MiB" "$n" 0
	tgt_adm --op delete --mode logicalunit --tid 1 --lun 1 >/dev/null
}

swap_case nogap 0 noop_interval=1
swap_case gap 2 noop_interval=1
swap_case gap-norescan 2 noop_interval=1,rescan_interval=0
swap_case nogap-norescan 0 noop_interval=1,rescan_interval=0
stream_case
blocksize_case live
blocksize_case relogin
pass "another disk at LUN 1 never gets the old disk's dirty data (no gap, 2 s gap, with and without polling, in a stream of writes), nor the same disk with another block size (live or across a re-login); the writer sees an error; lun1 becomes the new disk's file"
