#!/bin/bash
# Proves iscsifs under systemd and its logs: with NOTIFY_SOCKET it sends READY=1 (with
# STATUS= naming the sessions) only once the mount is usable, STOPPING=1 at SIGTERM and
# write-back progress (dirty MiB left, rate) every few seconds while the target is
# slow, then exits 0 with the data on the target; with JOURNAL_STREAM naming its stderr
# the lines carry <N> priority prefixes, without it timestamps; -o log=FILE writes
# timestamped lines there; a daemonized mount with no /dev/log logs to a file under
# $XDG_RUNTIME_DIR/iscsifs/ whose path it prints.
source "$(dirname "$0")/lib.sh"
requires python3

IQN=iqn.2026-11.org.iscsifs.test:notify
tgt_start
tgt_target 1 "$IQN"
tgt_sparse "$T/lun1.img" 96M
tgt_lun 1 1 "$T/lun1.img"
URL=$(tgt_url "$IQN")
M=$T/mnt
mkdir -p "$M"

# A notify socket: every datagram, one per line (newlines inside shown as '|').
python3 - "$T/notify.sock" "$T/notify.log" </dev/null >/dev/null 2>&1 <<'EOF2' &
import socket, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.settimeout(1)
end = time.time() + 300
with open(sys.argv[2], "a", buffering=1) as f:
    while time.time() < end:
        try:
            d = s.recv(4096)
        except socket.timeout:
            continue
        f.write("%.3f %s\n" % (time.time(), d.decode(errors="replace").replace("\n", "|")))
EOF2
track_pid $!
wait_for 10 test -S "$T/notify.sock" || fail "notify listener did not start"
: >"$T/notify.log"

# stderr of the daemon is a file; JOURNAL_STREAM names that file (dev:inode), as systemd
# names the journal's socket.
LOG=$T/daemon.err
: >"$LOG"
NOTIFY_SOCKET=$T/notify.sock JOURNAL_STREAM=$(stat -c '%d:%i' "$LOG") \
	"$ISCSIFS" -f -o dirty_expire=600,cache_size=128M,dirty_max=100M "$URL" "$M" \
	</dev/null 2>>"$LOG" >/dev/null &
PID=$!
track_mount "$M" "$PID" "$LOG"
wait_for 20 grep -q 'READY=1' "$T/notify.log" || fail "no READY=1 within 20 s: $(cat "$T/notify.log")"
is_fuse_mounted "$M" || fail "READY=1 was sent but $M is not mounted"
[[ -f $M/lun1 ]] || fail "READY=1 was sent but $M/lun1 is not there"
grep -qF "READY=1|STATUS=$M: 1 LUN, 1/1 session logged in" "$T/notify.log" ||
	fail "READY=1 without the sessions' STATUS=: $(cat "$T/notify.log")"
pass "READY=1 once the mount is usable, with STATUS= (1 LUN, 1/1 session logged in)"

grep -qE '^<[0-7]>iscsifs: mounted ' "$LOG" || fail "no <N> prefix under JOURNAL_STREAM: $(cat "$LOG")"
! grep -qE '^[0-9]{4}-' "$LOG" || fail "timestamps under JOURNAL_STREAM (the journal adds its own): $(cat "$LOG")"
pass "JOURNAL_STREAM: lines carry <N> priority prefixes, no timestamps"

# 64 MiB dirty, the target frozen: the write-back at SIGTERM cannot finish, and says so.
# The writer keeps its file open: close() would write its dirty data back first.
head -c $((64 << 20)) /dev/urandom >"$T/data"
cat >"$T/writer.py" <<'PY'
import os, sys, time
fd = os.open(sys.argv[2], os.O_WRONLY)
with open(sys.argv[1], "rb") as f:
    data = f.read()
off = 0
while off < len(data):
    off += os.pwrite(fd, data[off:off + (1 << 20)], off)
open(sys.argv[3], "w").close()
time.sleep(120)
PY
python3 "$T/writer.py" "$T/data" "$M/lun1" "$T/written" </dev/null >/dev/null 2>&1 &
WRITER=$!
track_pid "$WRITER"
wait_for 60 test -e "$T/written" || fail "the writer did not write 64 MiB within 60 s"
kill -STOP "$TGT_PID"
cleanup_fn kill -CONT "$TGT_PID"
kill -TERM "$PID"
wait_for 10 grep -q 'STOPPING=1' "$T/notify.log" || { kill -CONT "$TGT_PID"; fail "no STOPPING=1 after SIGTERM: $(cat "$T/notify.log")"; }
sleep 10
kill -CONT "$TGT_PID"
wait_for 120 eval '! pid_alive $PID' || fail "daemon still running 120 s after SIGTERM"
rc=0
wait "$PID" || rc=$?
((rc == 0)) || fail "daemon exit status $rc after SIGTERM, want 0"
grep -qE 'STOPPING=1\|STATUS=unmounted; writing back [1-9][0-9.]* MiB' "$T/notify.log" ||
	fail "STOPPING=1 does not say how much is to be written: $(cat "$T/notify.log")"
n=$(grep -cE '^<5>iscsifs: writing back before exit: [0-9.]+ MiB dirty left, [0-9.]+ MiB/s$' "$LOG" || true)
((n >= 2)) || fail "$n write-back progress lines in 10 s, want >= 2: $(cat "$LOG")"
grep -q 'STATUS=writing back before exit: ' "$T/notify.log" || fail "no write-back progress in STATUS=: $(cat "$T/notify.log")"
grep -qE 'write-back done: [0-9.]+ MiB in' "$LOG" || fail "no summary line: $(cat "$LOG")"
check_cmp "$T/lun1.img" "$T/data" $((64 << 20)) 0 0
pass "SIGTERM with 64 MiB dirty and a frozen target: STOPPING=1, $n progress lines, exit 0, data on the target"

# --- -o log=FILE: timestamped lines in the file, nothing on stderr
iscsifs_mount "$URL" "$M" -o "log=$T/file.log"
iscsifs_umount_ok "$M"
grep -qE '^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:]{8}\.[0-9]{3} iscsifs: mounted ' "$T/file.log" ||
	fail "-o log=FILE: no timestamped 'mounted' line in the file: $(cat "$T/file.log")"
! grep -q 'mounted' "$DAEMON_LOG" || fail "-o log=FILE: the line also went to stderr"
pass "-o log=FILE: timestamped lines in the file"

# --- daemonized, no /dev/log: a fallback file, its path printed at mount
if [[ -S /dev/log ]]; then
	log "/dev/log exists here: the fallback file is not exercised"
else
	mkdir -p -m 700 "$T/run"
	rc=0
	XDG_RUNTIME_DIR=$T/run timeout -k 2 30 "$ISCSIFS" "$URL" "$M" </dev/null >"$T/d.out" 2>"$T/d.err" || rc=$?
	((rc == 0)) || fail "daemonized mount exited $rc: $(cat "$T/d.err")"
	track_mount "$M"
	want=$T/run/iscsifs/$(tr / - <<<"${M#/}").log
	grep -qF "logging to $want" "$T/d.err" || fail "no 'logging to $want' at mount: $(cat "$T/d.err")"
	dpid=$(pgrep -f -- "$ISCSIFS $URL $M\$" | head -n 1)
	fusermount3 -u "$M"
	wait_for 20 eval '! pid_alive ${dpid:-0}' || fail "daemon did not exit after unmount"
	grep -qE '^[0-9-]{10} [0-9:.]{12} iscsifs: daemon pid [0-9]+ serving ' "$want" &&
		grep -qE '^[0-9-]{10} [0-9:.]{12} iscsifs: unmounted ' "$want" ||
		fail "fallback log $want has no timestamped lines: $(cat "$want" 2>&1)"
	pass "daemonized without /dev/log: logs to $want (printed at mount)"
fi
