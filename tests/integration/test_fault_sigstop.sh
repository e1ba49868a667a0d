#!/bin/bash
# Proves a hung target never hangs I/O without bound: with tgtd stopped (SIGSTOP) for
# longer than a short replacement_timeout, a read (cache=none: it must reach the
# target) fails with EIO no earlier than replacement_timeout and no later than
# noop_interval + noop_timeout + replacement_timeout + slack, later reads and writes
# fail at once, the daemon stays up and reports the outage in stats.json, and after
# SIGCONT I/O works again within a bound, with the right data.
source "$(dirname "$0")/lib.sh"
requires python3

IQN=iqn.2026-11.org.iscsifs.test:sigstop
NOOP_INTERVAL=1 NOOP_TIMEOUT=1 REPLACEMENT=3 LOGIN_TIMEOUT=5
SLACK=3
BOUND=$((NOOP_INTERVAL + NOOP_TIMEOUT + REPLACEMENT + SLACK))
tgt_start
tgt_target 1 "$IQN"
LUN=$T/lun1.img
tgt_sparse "$LUN" 16M
tgt_lun 1 1 "$LUN"
fill_random "$LUN"
M=$T/mnt
iscsifs_mount "$(tgt_url "$IQN" 1)" "$M" -o "cache=none,noop_interval=$NOOP_INTERVAL,noop_timeout=$NOOP_TIMEOUT,replacement_timeout=$REPLACEMENT,login_timeout=$LOGIN_TIMEOUT"

# io.py OP FILE OFF LEN [BACKING]: one read (checked against BACKING when given) or one
# write; prints "ok SECONDS" or "errno NAME SECONDS"; exit 0 either way, 2 when the
# data read differs from BACKING.
cat >"$T/io.py" <<'EOF'
import errno, os, sys, time
op, path, off, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
t0 = time.monotonic()
try:
    fd = os.open(path, os.O_RDWR)
    if op == "read":
        data = os.pread(fd, n, off)
    else:
        os.pwrite(fd, b"w" * n, off)
    os.close(fd)
except OSError as e:
    print("errno %s %.2f" % (errno.errorcode.get(e.errno, e.errno), time.monotonic() - t0))
    sys.exit(0)
secs = time.monotonic() - t0
if op == "read" and len(sys.argv) > 5:
    with open(sys.argv[5], "rb") as f:
        f.seek(off)
        want = f.read(n)
    if data != want:
        print("read %d bytes at %d differ from the backing file" % (n, off))
        sys.exit(2)
print("ok %.2f" % secs)
EOF
io() { run_bounded 60 python3 "$T/io.py" "$@"; }

out=$(io read "$M/lun1" 65536 65536 "$LUN")
[[ $out == ok* ]] || fail "a read before the fault: $out"

session_field()
{
	python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["sessions"][0][sys.argv[2]])' \
		"$M/.iscsifs/stats.json" "$1"
}

kill -STOP "$TGT_PID"
cleanup_fn eval 'kill -CONT $TGT_PID 2>/dev/null || true'
log "tgtd stopped; a read must fail with EIO after ${REPLACEMENT}..${BOUND} s"
out=$(io read "$M/lun1" $((3 << 20)) 65536)
log "read while the target is stopped: $out"
read -r what name first <<<"$out"
[[ $what == errno && $name == EIO ]] || fail "read while the target hangs: got '$out', want EIO"
# Not before replacement_timeout (less 0.5 s: the read starts a moment after SIGSTOP),
# not after the time to notice the loss plus replacement_timeout plus slack.
awk -v s="$first" -v lo="$REPLACEMENT" -v hi="$BOUND" 'BEGIN { exit !(s >= lo - 0.5 && s <= hi) }' ||
	fail "the read failed after $first s; want between $REPLACEMENT - 0.5 and $BOUND s" \
		"(noop_interval $NOOP_INTERVAL + noop_timeout $NOOP_TIMEOUT + replacement_timeout $REPLACEMENT + $SLACK)"

# Past the replacement timeout: new requests fail at once, reads and writes.
for op in read write; do
	out=$(io $op "$M/lun1" $((5 << 20)) 4096)
	read -r what name secs <<<"$out"
	[[ $what == errno && $name == EIO ]] || fail "a $op after the replacement timeout: got '$out', want EIO"
	awk -v s="$secs" 'BEGIN { exit !(s <= 1.0) }' ||
		fail "a $op after the replacement timeout took $secs s to fail, want at once (<= 1 s)"
done
pid_alive "$ISCSIFS_PID" || fail "the daemon died while the target was stopped"
is_fuse_mounted "$M" || fail "$M is no longer mounted while the target is stopped"
state=$(session_field state)
[[ $state != logged-in ]] || fail "stats.json says the session is '$state' while the target is stopped"
check_eq "nop_timeouts >= 1 in stats.json" "$(($(session_field nop_timeouts) >= 1))" 1
grep -q 'replacement_timeout' "$DAEMON_LOG" || fail "the daemon did not log the replacement timeout"
pass "target stopped: the first read got EIO after ${first} s (bound ${REPLACEMENT}..${BOUND} s), later reads and writes at once; daemon up, session '$state'"

kill -CONT "$TGT_PID"
start=$SECONDS
# Recovery: at most a pending login (login_timeout) plus the longest backoff so far.
RECOVER=$((LOGIN_TIMEOUT + 8 + SLACK))
until out=$(io read "$M/lun1" $((3 << 20)) 65536 "$LUN") && [[ $out == ok* ]]; do
	((SECONDS - start <= RECOVER)) || fail "I/O still fails $RECOVER s after SIGCONT: $out"
	sleep 0.5
done
log "reads work again $((SECONDS - start)) s after SIGCONT"
out=$(io write "$M/lun1" $((5 << 20)) 4096)
[[ $out == ok* ]] || fail "a write after SIGCONT: $out"
check_eq "4096 bytes at 5 MiB of the backing file" "$(dd if="$LUN" bs=4096 skip=1280 count=1 status=none | tr -d w | wc -c)" 0
check_eq "session state after recovery" "$(session_field state)" logged-in
iscsifs_umount_ok "$M"
pass "after SIGCONT: reads (right data) and writes work again within $((SECONDS - start)) s; clean unmount"
