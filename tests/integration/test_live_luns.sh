#!/bin/bash
# Proves LUN files follow the target's LUN set without a remount (issue 11): a LUN
# created with tgtadm while mounted appears after `iscsifs rescan MOUNTPOINT` (which
# reports it) with its data; a deleted LUN disappears, and a handle still open on it
# gets errors (ENODEV/EIO) for reads - cached data included - and writes, also after
# another disk has been put at the same LUN number and has become lun2 again (a new
# file: another inode), whose data the old handle never reads and never changes; SIGHUP
# rescans and the daemon lives on; tgt's own REPORTED LUNS DATA HAS CHANGED unit
# attention to a read makes a new LUN appear (identity of the LUN that got it checked
# first); -o rescan_interval polls without being asked; a new target of a portal mount
# appears as a directory with its LUNs on rescan; the
# rescan command fails with a clear message on a directory that is not an iscsifs mount.
source "$(dirname "$0")/lib.sh"
requires python3 stat sha256sum

IQN=iqn.2026-11.org.iscsifs.test:liveluns
M=$T/mnt
MiB=1048576
tgt_start
tgt_target 1 "$IQN"
tgt_sparse "$T/lun1.img" 64M
tgt_lun 1 1 "$T/lun1.img"
URL=$(tgt_url "$IQN")
iscsifs_mount "$URL" "$M" -o noop_interval=1,noop_timeout=2
PID=$ISCSIFS_PID

rescan()
{
	local out rc=0
	out=$(run_bounded 60 "$ISCSIFS" rescan "$M" 2>&1) || rc=$?
	((rc == 0)) || fail "iscsifs rescan $M: exit $rc: $out"
	log "rescan: $(tr '\n' ';' <<<"$out")"
	RESCAN_OUT=$out
}

# --- a new LUN appears on rescan
tgt_sparse "$T/lun2.img" 32M
fill_random "$T/lun2.img" $((2 * MiB))
tgt_lun 1 2 "$T/lun2.img"
[[ ! -e $M/lun2 ]] || fail "lun2 appeared before any rescan"
rescan
grep -q 'lun2.*added' <<<"$RESCAN_OUT" || fail "the rescan does not report lun2 as added: $RESCAN_OUT"
[[ -e $M/lun2 ]] || fail "lun2 is not there after the rescan: $(ls "$M")"
check_eq "lun2 size" "$(stat -c %s "$M/lun2")" $((32 * MiB))
check_cmp "$T/lun2.img" "$M/lun2" $((2 * MiB))
ino_old=$(stat -c %i "$M/lun2")
rescan
[[ -z $RESCAN_OUT || $RESCAN_OUT == *"no change"* ]] || fail "a rescan without change reports: $RESCAN_OUT"

# --- a handle open on lun2 while it is deleted, and another disk put at LUN 2
cat >"$T/hold.py" <<'EOF'
import errno, os, sys, time
path, flag, out = sys.argv[1], sys.argv[2], sys.argv[3]
fd = os.open(path, os.O_RDWR)
first = os.pread(fd, 4096, 0)            # cached from now on
open(out + ".first", "wb").write(first)
print("open", flush=True)
while not os.path.exists(flag):
    time.sleep(0.1)
for what, f in (("read", lambda: os.pread(fd, 4096, 0)),
                ("read-uncached", lambda: os.pread(fd, 4096, 16 << 20)),
                ("write", lambda: os.pwrite(fd, b"X" * 4096, 8192)),
                ("fsync", lambda: os.fsync(fd))):
    try:
        r = f()
        if what.startswith("read"):
            open(out + "." + what, "wb").write(r)
        print(what, "ok", flush=True)
    except OSError as e:
        print(what, errno.errorcode.get(e.errno, e.errno), flush=True)
try:
    os.close(fd)
    print("close ok", flush=True)
except OSError as e:
    print("close", errno.errorcode.get(e.errno, e.errno), flush=True)
EOF
python3 "$T/hold.py" "$M/lun2" "$T/flag" "$T/held" >"$T/hold.out" 2>&1 &
HOLD=$!
track_pid $HOLD
wait_for 20 grep -q open "$T/hold.out" || fail "the holder did not open lun2: $(cat "$T/hold.out")"
tgt_adm --op delete --mode logicalunit --tid 1 --lun 2 >/dev/null
rescan
grep -q 'lun2.*removed' <<<"$RESCAN_OUT" || fail "the rescan does not report lun2 as removed: $RESCAN_OUT"
[[ ! -e $M/lun2 ]] || fail "lun2 is still listed after its LUN was deleted: $(ls "$M")"
# another disk (its own SCSI ID and serial) at LUN 2
tgt_sparse "$T/other.img" 48M
fill_random "$T/other.img" $((20 * MiB))
tgt_adm --op new --mode logicalunit --tid 1 --lun 2 --backing-store "$T/other.img" >/dev/null
tgt_adm --op update --mode logicalunit --tid 1 --lun 2 --params scsi_id=other2,scsi_sn=other2 >/dev/null
sum_other=$(sha256sum <"$T/other.img")
rescan
grep -q 'lun2.*added' <<<"$RESCAN_OUT" || fail "the new LUN 2 is not reported as added: $RESCAN_OUT"
check_eq "the new lun2's size" "$(stat -c %s "$M/lun2")" $((48 * MiB))
ino_new=$(stat -c %i "$M/lun2")
[[ $ino_new != "$ino_old" ]] || fail "the new disk at LUN 2 got the old file's inode $ino_old"
touch "$T/flag"
wait "$HOLD" || true
out=$(cat "$T/hold.out")
log "old handle: $(tr '\n' ';' <<<"$out")"
for op in read read-uncached write fsync; do
	grep -qE "^$op (ENODEV|EIO)\$" <<<"$out" ||
		fail "$op on the handle of the deleted LUN did not fail with ENODEV/EIO: $out"
done
check_eq "the other disk's backing file (untouched by the old handle)" \
	"$(sha256sum <"$T/other.img")" "$sum_other"
check_cmp "$T/other.img" "$M/lun2" $((20 * MiB))

# --- SIGHUP rescans, and the daemon lives
tgt_sparse "$T/lun3.img" 16M
tgt_lun 1 3 "$T/lun3.img"
kill -HUP "$PID"
wait_for 20 test -e "$M/lun3" || fail "lun3 did not appear within 20 s of SIGHUP"
pid_alive "$PID" || fail "the daemon died of SIGHUP"
is_fuse_mounted "$M" || fail "the mount is gone after SIGHUP"
check_eq "lun3 size" "$(stat -c %s "$M/lun3")" $((16 * MiB))
grep -q 'SIGHUP' "$DAEMON_LOG" || fail "the SIGHUP rescan is not logged"

# --- tgt itself reports REPORTED LUNS DATA HAS CHANGED (3F/0E) to the next command
# after a LUN is created: a read is enough, no rescan asked for
tgt_sparse "$T/lun5.img" 8M
tgt_lun 1 5 "$T/lun5.img"
dd if="$M/lun1" of=/dev/null bs=4k count=1 skip=$((40 * 256)) iflag=direct status=none ||
	fail "the read that gets the unit attention failed"
wait_for 20 test -e "$M/lun5" || fail "lun5 did not appear after tgt's 3F/0E unit attention"
grep -q 'reported LUNs data has changed' "$DAEMON_LOG" || fail "the 3F/0E unit attention is not logged"
grep -q 'still the same disk' "$DAEMON_LOG" || fail "lun1's identity was not checked on the live session"

# --- not an iscsifs mount
mkdir -p "$T/plain"
expect_fail_msg "not an iscsifs mount" "$ISCSIFS" rescan "$T/plain"

# --- many rescans at once (four programs, and a reader of stats.json): each gets its
# report, the daemon lives (the report of a handle is replaced while it may be read;
# under ASan a reply's buffer freed by a racing release was taken for a use after free)
for i in 1 2 3 4; do
	( for j in $(seq 25); do "$ISCSIFS" rescan "$M" >/dev/null || exit 1; done ) &
	track_pid $!
	rpids+=($!)
done
for j in $(seq 50); do cat "$M/.iscsifs/stats.json" >/dev/null || fail "stats.json unreadable during rescans"; done
for p in "${rpids[@]}"; do wait "$p" || fail "a concurrent iscsifs rescan failed"; done
pid_alive "$PID" && is_fuse_mounted "$M" || fail "the daemon did not survive 100 concurrent rescans"
log "100 rescans from four programs at once: all answered"

# --- stats.json counts the rescans and the changes
got=$(python3 -c 'import json,sys; l=json.load(open(sys.argv[1]))["live"]; print(l["rescans"] >= 4, l["luns_added"], l["luns_removed"])' "$M/.iscsifs/stats.json")
check_eq "stats.json live: rescans >= 4, LUNs added, removed" "$got" "True 4 1"
grep -q '^iscsifs_luns_added_total 4$' "$M/.iscsifs/metrics" || fail "metrics lack iscsifs_luns_added_total 4"

# --- polling: -o rescan_interval
iscsifs_umount_ok "$M"
iscsifs_mount "$URL" "$M" -o noop_interval=1,rescan_interval=1
tgt_sparse "$T/lun4.img" 16M
tgt_lun 1 4 "$T/lun4.img"
wait_for 15 test -e "$M/lun4" || fail "lun4 did not appear within 15 s with rescan_interval=1"
tgt_adm --op delete --mode logicalunit --tid 1 --lun 4 >/dev/null
wait_for 15 eval '! test -e "$M/lun4"' || fail "lun4 did not go within 15 s with rescan_interval=1"
iscsifs_umount_ok "$M"

# --- a portal mount: a new target appears as a directory with its LUNs
IQN2=iqn.2026-11.org.iscsifs.test:liveluns2
iscsifs_mount "iscsi://$TGT_PORTAL" "$M" -o noop_interval=1,rescan_interval=0
[[ -d $M/$IQN/ && ! -e $M/$IQN2 ]] || fail "portal mount: $(ls "$M")"
tgt_target 2 "$IQN2"
tgt_sparse "$T/t2lun1.img" 8M
fill_random "$T/t2lun1.img" "$MiB"
tgt_lun 2 1 "$T/t2lun1.img"
rescan
grep -q "$IQN2/: added" <<<"$RESCAN_OUT" || fail "the new target is not reported: $RESCAN_OUT"
grep -q "$IQN2/lun1: added" <<<"$RESCAN_OUT" || fail "its LUN is not reported: $RESCAN_OUT"
check_cmp "$T/t2lun1.img" "$M/$IQN2/lun1" "$MiB"
iscsifs_umount_ok "$M"
pass "LUN files follow the target: added, removed, replaced, on rescan, SIGHUP, unit attention, polling; new targets of a portal"
