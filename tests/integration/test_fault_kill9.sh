#!/bin/bash
# Proves a target crash is survived without loss: kill -9 of tgtd during a stream of
# write+fsync records, and its restart (same backing file, same config) within
# replacement_timeout, give the writer no error, and every record whose fsync returned
# is in the backing file, in every cache mode, also after unmount.
source "$(dirname "$0")/lib.sh"
requires python3

IQN=iqn.2026-11.org.iscsifs.test:kill9
: "${DOWN_SECS:=2}"          # how long tgtd stays dead
tgt_start
tgt_target 1 "$IQN"
LUN=$T/lun1.img
tgt_sparse "$LUN" 32M
tgt_lun 1 1 "$LUN"
fill_random "$LUN"
M=$T/mnt

# The writer: record i (REC bytes, a size that is no multiple of 512, so records share
# sectors and most writes are read-modify-writes) at offset i*REC carries its sequence
# number and a payload derived from it. After each write it fsyncs, then appends i to
# the log (flushed), so the log lists exactly the records whose fsync returned. It
# stops at the stop file or at MAX records; any error ends it with status 1.
cat >"$T/writer.py" <<'EOF'
import hashlib, os, sys, time
path, log, stop, rec = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
size = os.stat(path).st_size
nmax = size // rec

def record(i):
    head = b"REC %08d " % i
    body = hashlib.sha256(b"%d" % i).digest() * (rec // 32 + 1)
    return (head + body)[:rec]

fd = os.open(path, os.O_RDWR)
lf = open(log, "w")
i = 0
slowest = 0.0
try:
    while i < nmax and not os.path.exists(stop):
        t0 = time.monotonic()
        n = os.pwrite(fd, record(i), i * rec)
        if n != rec:
            print("FAIL: pwrite of record %d returned %d, want %d" % (i, n, rec), flush=True)
            sys.exit(1)
        os.fsync(fd)
        slowest = max(slowest, time.monotonic() - t0)
        lf.write("%d\n" % i)
        lf.flush()
        i += 1
except OSError as e:
    print("FAIL: record %d: %s (errno %s)" % (i, e, e.errno), flush=True)
    sys.exit(1)
os.close(fd)
print("writer: %d records written and fsynced; slowest write+fsync %.1f s" % (i, slowest),
      flush=True)
EOF

# check.py BACKING LOG REC: every record in the log is in BACKING; prints the count.
cat >"$T/check.py" <<'EOF'
import hashlib, sys
backing, log, rec = sys.argv[1], sys.argv[2], int(sys.argv[3])
def record(i):
    head = b"REC %08d " % i
    body = hashlib.sha256(b"%d" % i).digest() * (rec // 32 + 1)
    return (head + body)[:rec]
seqs = [int(x) for x in open(log).read().split()]
bad = []
with open(backing, "rb") as f:
    for i in seqs:
        f.seek(i * rec)
        got = f.read(rec)
        if got != record(i):
            want = record(i)
            k = next(j for j in range(rec) if j >= len(got) or got[j] != want[j])
            bad.append("record %d at offset %d: first difference at byte %d: got %s, want %s"
                       % (i, i * rec, k, got[k:k + 12].hex(), want[k:k + 12].hex()))
if bad:
    print("FAIL: %d of %d fsynced records are not in %s:" % (len(bad), len(seqs), backing))
    print("\n".join(bad[:10]))
    sys.exit(1)
print("%d fsynced records (0..%d) all in the backing file" % (len(seqs), seqs[-1] if seqs else -1))
EOF

# count FILE: lines in FILE (0 while it does not exist yet).
count() { if [[ -f $1 ]]; then wc -l <"$1"; else echo 0; fi; }

REC=3000
for mode in writeback writethrough none; do
	WLOG=$T/written.$mode STOP=$T/stop.$mode
	rm -f "$WLOG" "$STOP"
	# Short keepalive so the loss is seen at once; the restart is far inside the
	# replacement timeout.
	iscsifs_mount "$(tgt_url "$IQN" 1)" "$M" \
		-o "cache=$mode,noop_interval=1,noop_timeout=2,replacement_timeout=45"
	python3 "$T/writer.py" "$M/lun1" "$WLOG" "$STOP" "$REC" >"$T/writer.$mode.out" 2>&1 &
	WPID=$!
	track_pid "$WPID"
	wait_for 20 eval '(($(count "$WLOG") >= 50)) || ! pid_alive $WPID' ||
		fail "$mode: the writer did not fsync 50 records in 20 s before the fault"
	pid_alive "$WPID" || fail "$mode: the writer died before the fault: $(cat "$T/writer.$mode.out")"

	tgt_kill9
	before=$(count "$WLOG")
	log "$mode: tgtd killed after $before fsynced records; restarting it in ${DOWN_SECS} s"
	sleep "$DOWN_SECS"
	during=$(count "$WLOG")
	# The fault must have hit the stream: no fsync can complete while tgtd is dead.
	((during <= before + 1)) ||
		fail "$mode: $((during - before)) records were fsynced while tgtd was dead"
	tgt_restart
	t0=$SECONDS
	# The writer must go on: 50 more fsynced records, within 30 s of the restart.
	wait_for 30 eval '(($(count "$WLOG") >= during + 50)) || ! pid_alive $WPID' ||
		fail "$mode: the writer made no progress 30 s after tgtd came back" \
			"($(count "$WLOG") records, $during at the restart)"
	pid_alive "$WPID" || fail "$mode: the writer died: $(cat "$T/writer.$mode.out")"
	log "$mode: writing again $((SECONDS - t0)) s after the restart ($(count "$WLOG") records)"
	touch "$STOP"
	rc=0
	wait_for 30 eval '! pid_alive $WPID' || fail "$mode: the writer did not stop within 30 s"
	wait "$WPID" || rc=$?
	cat "$T/writer.$mode.out"
	((rc == 0)) || fail "$mode: the writer saw an error across the target restart (exit $rc)"

	stats=$(cat "$M/.iscsifs/stats.json")
	reconnects=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["sessions"][0]["reconnects"])' <<<"$stats")
	((reconnects >= 1)) || fail "$mode: stats.json reports $reconnects reconnects, want >= 1: $stats"
	grep -q 'session re-established' "$DAEMON_LOG" ||
		fail "$mode: the daemon log does not say the session was re-established"

	# Before the unmount: what fsync promised is on the target already.
	python3 "$T/check.py" "$LUN" "$WLOG" "$REC" || fail "$mode: fsynced records missing (before unmount)"
	iscsifs_umount_ok "$M"
	python3 "$T/check.py" "$LUN" "$WLOG" "$REC" || fail "$mode: fsynced records missing (after unmount)"
	pass "cache=$mode: kill -9 of tgtd after $before records, back after ${DOWN_SECS} s:" \
		"no error, all $(count "$WLOG") fsynced records in the backing file"
done
