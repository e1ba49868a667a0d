#!/bin/bash
# Proves a connection dropped under I/O is recovered without error or loss: while a
# writer does random unaligned writes (up to 1 MiB), fsyncs and read-back checks against
# its model, tgtd closes the session's connection (tgtadm --op delete --mode conn) three
# times; the writer sees no error and no wrong data, the daemon counts the reconnects,
# and the backing file equals the model, in every cache mode.
source "$(dirname "$0")/lib.sh"
requires python3

IQN=iqn.2026-11.org.iscsifs.test:dropconn
: "${SEED:=$RANDOM}"
DROPS=3
log "SEED=$SEED (set SEED to reproduce)"
tgt_start
tgt_target 1 "$IQN"
LUN=$T/lun1.img
tgt_sparse "$LUN" 32M
tgt_lun 1 1 "$LUN"
fill_random "$LUN"
M=$T/mnt

# The writer: random writes (1 B .. 1 MiB, any alignment) into the file and a model of
# it, an fsync every 8 writes, a read-back of a random range compared with the model
# every 4; until the stop file appears. Then a final fsync, a full read-back, and the
# model saved for the shell. Any error or difference ends it with status 1.
cat >"$T/writer.py" <<'EOF'
import os, random, sys, time
path, backing, stop, model_path, seed = sys.argv[1:6]
rnd = random.Random(int(seed))
model = bytearray(open(backing, "rb").read())
size = len(model)
fd = os.open(path, os.O_RDWR)
ops = slowest = 0

def check(off, n, what):
    got = os.pread(fd, n, off)
    if got != model[off:off + n]:
        k = next(i for i in range(n) if i >= len(got) or got[i] != model[off + i])
        print("FAIL: %s: read of %d bytes at %d differs from what was written, first at "
              "offset %d" % (what, n, off, off + k), flush=True)
        sys.exit(1)

try:
    while not os.path.exists(stop):
        t0 = time.monotonic()
        n = rnd.choice([rnd.randint(1, 4096), rnd.randint(1, 65536), rnd.randint(1, 1 << 20)])
        off = rnd.randrange(size - n)
        data = rnd.randbytes(n)
        if os.pwrite(fd, data, off) != n:
            print("FAIL: short write", flush=True)
            sys.exit(1)
        model[off:off + n] = data
        ops += 1
        if ops % 8 == 0:
            os.fsync(fd)
        if ops % 4 == 0:
            m = rnd.randint(1, 1 << 17)
            check(rnd.randrange(size - m), m, "op %d" % ops)
        slowest = max(slowest, time.monotonic() - t0)
        with open(stop + ".ops.tmp", "w") as f:
            f.write(str(ops))
        os.rename(stop + ".ops.tmp", stop + ".ops")
    os.fsync(fd)
    check(0, size, "final read-back")
except OSError as e:
    print("FAIL: op %d: %s" % (ops, e), flush=True)
    sys.exit(1)
os.close(fd)
with open(model_path, "wb") as f:
    f.write(model)
print("writer: %d writes; slowest operation %.1f s" % (ops, slowest), flush=True)
EOF

ops() { cat "$T/stop.ops" 2>/dev/null || echo 0; }

# conns: "SID CID" of every connection of target 1, one a line.
conns()
{
	tgt_adm --op show --mode conn --tid 1 |
		awk '/^Session:/ { s = $2 } /^ *Connection:/ { print s, $2 }'
}

# drop_conn: close, from tgtd's side, every connection of target 1 not closed before
# (tgtd may list a closed one a moment longer). Prints how many it closed.
DROPPED=" "
drop_conn()
{
	local sid cid n=0
	while read -r sid cid; do
		[[ $DROPPED != *" $sid "* ]] || continue
		tgt_adm --op delete --mode conn --tid 1 --sid "$sid" --cid "$cid" >/dev/null
		DROPPED+="$sid "
		n=$((n + 1))
	done < <(conns)
	echo "$n"
}

# logged_in_again: tgtd lists a connection that was not closed yet.
logged_in_again()
{
	local sid cid
	while read -r sid cid; do
		[[ $DROPPED == *" $sid "* ]] || return 0
	done < <(conns)
	return 1
}

for mode in writeback writethrough none; do
	rm -f "$T/stop" "$T/stop.ops" "$T/model"
	iscsifs_mount "$(tgt_url "$IQN" 1)" "$M" -o "cache=$mode"
	python3 "$T/writer.py" "$M/lun1" "$LUN" "$T/stop" "$T/model" "$((SEED + ${#mode}))" \
		>"$T/writer.out" 2>&1 &
	WPID=$!
	track_pid "$WPID"
	for ((d = 1; d <= DROPS; d++)); do
		at=$(ops)
		wait_for 20 eval '(($(ops) >= at + 20)) || ! pid_alive $WPID' ||
			fail "$mode: the writer made no progress in 20 s (before drop $d, $(ops) ops)"
		pid_alive "$WPID" || fail "$mode: the writer failed: $(cat "$T/writer.out")"
		n=$(drop_conn)
		((n == 1)) || fail "$mode: drop $d: found $n connections to close, want 1"
		log "$mode: connection dropped ($d of $DROPS) after $(ops) writes"
		# Wait until the daemon is back before the next drop.
		wait_for 20 logged_in_again ||
			fail "$mode: the daemon did not log in again within 20 s after drop $d"
	done
	# shellcheck disable=SC2034 # read by the eval below
	at=$(ops)
	wait_for 20 eval '(($(ops) >= at + 20)) || ! pid_alive $WPID' ||
		fail "$mode: the writer made no progress in 20 s after the last drop"
	touch "$T/stop"
	wait_for 60 eval '! pid_alive $WPID' || fail "$mode: the writer did not finish within 60 s"
	rc=0
	wait "$WPID" || rc=$?
	cat "$T/writer.out"
	((rc == 0)) || fail "$mode: the writer saw an error or wrong data across dropped connections (SEED=$SEED)"
	reconnects=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["sessions"][0]["reconnects"])' \
		"$M/.iscsifs/stats.json")
	check_eq "$mode: reconnects in stats.json" "$reconnects" "$DROPS"
	check_cmp "$LUN" "$T/model" # after the final fsync
	iscsifs_umount_ok "$M"
	check_cmp "$LUN" "$T/model"
	pass "cache=$mode: $DROPS dropped connections under I/O: no error, reads right, backing file equals the model"
done
