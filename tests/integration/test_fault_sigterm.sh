#!/bin/bash
# Proves SIGTERM loses no data: with dirty data held only in the write-back cache
# (cache=writeback, dirty_expire=600, the writer still holding the file open, so neither
# close nor expiry has written it), SIGTERM makes the daemon write it back, unmount and
# exit 0 within a bound, and the backing file then has every byte written. With the
# target dead, SIGTERM still ends the daemon within a bound (replacement_timeout plus
# the write-back retries), unmounted, and the lost dirty data is logged.
source "$(dirname "$0")/lib.sh"
requires python3

IQN=iqn.2026-11.org.iscsifs.test:sigterm
: "${SEED:=$RANDOM}"
log "SEED=$SEED (set SEED to reproduce)"
tgt_start
tgt_target 1 "$IQN"
LUN=$T/lun1.img
tgt_sparse "$LUN" 32M
tgt_lun 1 1 "$LUN"
fill_random "$LUN"
M=$T/mnt
iscsifs_mount "$(tgt_url "$IQN" 1)" "$M" -o "cache=writeback,dirty_expire=600"
DPID=$ISCSIFS_PID

# The writer: 4 MiB sequential at 1 MiB, then 300 small unaligned writes anywhere, into
# a model of the LUN loaded from the backing file; it saves the model, says "ready" and
# keeps the file open (no close, no fsync) until killed.
python3 - "$M/lun1" "$LUN" "$T/model" "$SEED" >"$T/writer.out" 2>&1 <<'EOF' &
import os, random, sys, time
path, backing, model_path, seed = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
rnd = random.Random(seed)
model = bytearray(open(backing, "rb").read())
fd = os.open(path, os.O_RDWR)
def w(off, data):
    assert os.pwrite(fd, data, off) == len(data)
    model[off:off + len(data)] = data
w(1 << 20, rnd.randbytes(4 << 20))
for _ in range(300):
    n = rnd.randint(1, 9000)
    w(rnd.randrange(len(model) - n), rnd.randbytes(n))
with open(model_path + ".tmp", "wb") as f:
    f.write(model)
os.rename(model_path + ".tmp", model_path)
print("ready", flush=True)
time.sleep(600)
EOF
WPID=$!
track_pid "$WPID"
wait_for 60 eval 'grep -q ready "$T/writer.out" || ! pid_alive $WPID' || fail "the writer did not finish in 60 s"
grep -q ready "$T/writer.out" || fail "the writer failed: $(cat "$T/writer.out")"

# The data is dirty in the daemon, not on the target yet.
dirty=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["luns"][0]["cache"]["dirty_bytes"])' \
	"$M/.iscsifs/stats.json")
((dirty > 0)) || fail "stats.json reports dirty_bytes=$dirty before SIGTERM: nothing to test"
if cmp -s "$LUN" "$T/model"; then
	fail "the backing file already has the data before SIGTERM: nothing to test"
fi
log "$dirty dirty bytes in the cache; the backing file differs from what was written"

start=$SECONDS
kill -TERM "$DPID"
wait_for 30 eval '! pid_alive $DPID' || fail "the daemon is still running 30 s after SIGTERM"
rc=0
wait "$DPID" || rc=$?
log "the daemon exited with status $rc $((SECONDS - start)) s after SIGTERM"
((rc == 0)) || fail "the daemon exited with status $rc after SIGTERM, want 0"
is_mounted "$M" && fail "$M is still mounted after the daemon exited"
if grep -qE 'could not be written back|are lost' "$DAEMON_LOG"; then
	fail "the daemon says it lost dirty data: $(grep -E 'written back|lost' "$DAEMON_LOG")"
fi
check_cmp "$LUN" "$T/model"
pass "SIGTERM with $dirty dirty bytes: written back, unmounted, exit 0; the backing file has all of it"

# --- 2. The target is dead: the dirty data cannot be written; SIGTERM must still end
# the daemon within a bound, and the loss must be said, not silent.
RT=3
iscsifs_mount "$(tgt_url "$IQN" 1)" "$M" \
	-o "cache=writeback,dirty_expire=600,noop_interval=1,noop_timeout=1,replacement_timeout=$RT"
DPID=$ISCSIFS_PID
python3 - "$M/lun1" >"$T/writer2.out" 2>&1 <<'EOF' &
import os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
os.pwrite(fd, b"D" * 300000, 4096)
print("ready", flush=True)
time.sleep(600)
EOF
WPID=$!
track_pid "$WPID"
wait_for 30 eval 'grep -q ready "$T/writer2.out" || ! pid_alive $WPID' && grep -q ready "$T/writer2.out" ||
	fail "the second writer failed: $(cat "$T/writer2.out")"
tgt_kill9
start=$SECONDS
kill -TERM "$DPID"
# replacement_timeout for the first write-back, then write_retries (5) fast failures
# with backoff (0.2 .. 3.2 s): about RT + 7 s; 30 s is the bound.
wait_for 30 eval '! pid_alive $DPID' || fail "the daemon is still running 30 s after SIGTERM with the target dead"
rc=0
wait "$DPID" || rc=$?
is_mounted "$M" && fail "$M is still mounted after the daemon exited"
grep -q 'could not be written back and are lost' "$DAEMON_LOG" ||
	fail "the daemon exited without saying that its dirty data was lost"
((rc == 6)) || fail "the daemon lost dirty data and exited with status $rc, want 6 (exitcode.h: data not written)"
pass "SIGTERM with the target dead: the daemon exited (status $rc) $((SECONDS - start)) s later, unmounted, and logged the lost dirty data"

# --- 3. SIGTERM again while the final write-back waits for a dead target (the first
# SIGTERM, or an unmount, began it; libfuse's handlers are gone by then): the daemon
# gives the dirty data up at once and exits as usual - the final line, status 6, its
# lock notes ($XDG_RUNTIME_DIR/iscsifs/*.PID) removed - rather than being killed by
# the signal's default action.
tgt_restart
iscsifs_mount "$(tgt_url "$IQN" 1)" "$M" \
	-o "cache=writeback,dirty_expire=600,noop_interval=1,noop_timeout=1,replacement_timeout=120"
DPID=$ISCSIFS_PID
python3 - "$M/lun1" >"$T/writer3.out" 2>&1 <<'EOF' &
import os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
os.pwrite(fd, b"T" * 300000, 8192)
print("ready", flush=True)
time.sleep(600)
EOF
WPID=$!
track_pid "$WPID"
wait_for 30 eval 'grep -q ready "$T/writer3.out" || ! pid_alive $WPID' && grep -q ready "$T/writer3.out" ||
	fail "the third writer failed: $(cat "$T/writer3.out")"
ls "$XDG_RUNTIME_DIR/iscsifs/" | grep -q "\.$DPID\$" || fail "no lock note of pid $DPID in $XDG_RUNTIME_DIR/iscsifs: $(ls "$XDG_RUNTIME_DIR/iscsifs/")"
tgt_kill9
kill -TERM "$DPID"
wait_for 20 grep -q 'writing back' "$DAEMON_LOG" || fail "the final write-back did not begin after SIGTERM"
sleep 2
pid_alive "$DPID" || fail "the daemon ended before the second SIGTERM (replacement_timeout=120): nothing to test"
start=$SECONDS
kill -TERM "$DPID"
wait_for 20 eval '! pid_alive $DPID' || fail "the daemon still runs 20 s after a SIGTERM during its final write-back"
rc=0
wait "$DPID" || rc=$?
((rc == 6)) || fail "SIGTERM during the final write-back: exit status $rc, want 6 (data not written)"
grep -q 'exiting with an error: dirty data of 1 LUN could not be written' "$DAEMON_LOG" ||
	fail "no final line after SIGTERM during the final write-back: $(tail -3 "$DAEMON_LOG")"
left=$(ls "$XDG_RUNTIME_DIR/iscsifs/" | grep "\.$DPID\$" || true)
[[ -z $left ]] || fail "the daemon left its lock notes: $left"
is_mounted "$M" && fail "$M is still mounted after the daemon exited"
pass "SIGTERM during the final write-back: given up at once ($((SECONDS - start)) s), final line, status 6, lock notes removed"
