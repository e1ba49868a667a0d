#!/bin/bash
# Proves a MEDIUM ERROR is reported and forgotten correctly: with tgtd's backing file on
# errfs (a FUSE file whose reads of one byte range fail, which tgtd answers with MEDIUM
# ERROR, sense 3/0x11), reads of that range fail with EIO (not retried), the neighbours
# read right, the daemon stays up, and once the fault is gone a read of the same range
# returns the right data — no cache block was left marked valid — in every cache mode.
source "$(dirname "$0")/lib.sh"
requires python3 fusermount3

: "${ERRFS:=$SRCDIR/build/tests/integration/errfs}"
[[ -x $ERRFS ]] || fail "errfs helper $ERRFS missing (build first: ninja -C build)"
requires_fuse
IQN=iqn.2026-11.org.iscsifs.test:medium
CB=65536                           # the daemon's default cache block
BAD_OFF=$((5 * 1024 * 1024 + 8192)) BAD_LEN=4096   # inside the cache block at 5 MiB
DISK=$T/disk.img EFS=$T/efs FAULTS=$T/faults M=$T/mnt
head -c 16M /dev/urandom >"$DISK"

# errfs, with tgtd's LUN on its file. At exit: iscsifs, then tgtd (which holds the file
# open), then errfs go, in that order.
mkdir -p "$EFS"
"$ERRFS" "$DISK" "$FAULTS" "$EFS" </dev/null >"$T/errfs.log" 2>&1 &
EPID=$!
track_mount "$EFS" "$EPID" "$T/errfs.log"
wait_for 10 eval 'is_mounted "$EFS" || ! pid_alive $EPID' && is_mounted "$EFS" ||
	fail "errfs did not mount: $(cat "$T/errfs.log")"
errfs_down()
{
	_unmount_one "$M"
	_tgt_kill_now
	_unmount_one "$EFS"
}
cleanup_fn errfs_down
cmp -s "$EFS/disk" "$DISK" || fail "errfs does not pass $DISK through"

tgt_start
tgt_target 1 "$IQN"
tgt_lun 1 1 "$EFS/disk"

# rd.py FILE DISK SPEC...: each SPEC is [d]OFF:LEN (d: O_DIRECT, else buffered), read
# and compared with DISK; prints one line per SPEC: "ok", "EIO" (or another errno name)
# or "DIFF AT n" when the data differs.
cat >"$T/rd.py" <<'EOF'
import errno, mmap, os, sys
path, disk = sys.argv[1], sys.argv[2]
fds = {}
def fd_for(direct):
    if direct not in fds:
        fds[direct] = os.open(path, os.O_RDONLY | (os.O_DIRECT if direct else 0))
    return fds[direct]
for spec in sys.argv[3:]:
    direct = spec.startswith("d")
    off, n = (int(x) for x in spec.lstrip("d").split(":"))
    try:
        if direct:
            buf = mmap.mmap(-1, n)
            got = bytes(buf[:os.preadv(fd_for(True), [buf], off)])
        else:
            got = os.pread(fd_for(False), n, off)
    except OSError as e:
        print(errno.errorcode.get(e.errno, str(e.errno)))
        continue
    with open(disk, "rb") as f:
        f.seek(off)
        want = f.read(n)
    if got != want:
        k = next(i for i in range(n) if i >= len(got) or got[i] != want[i])
        print("DIFF AT %d" % (off + k))
    else:
        print("ok")
EOF

# reads WHAT EXPECTED SPEC...: rd.py on $M/lun1; EXPECTED is the space-separated list
# of results, one per SPEC.
reads()
{
	local what=$1 want=$2 got
	shift 2
	got=$(run_bounded 60 python3 "$T/rd.py" "$M/lun1" "$DISK" "$@" | tr '\n' ' ') ||
		fail "$what: rd.py did not finish: $got"
	[[ ${got% } == "$want" ]] || fail "$what: reads $*: got [${got% }], want [$want]"
}

fault_on() { echo "$BAD_OFF $BAD_LEN" >"$FAULTS.tmp" && mv "$FAULTS.tmp" "$FAULTS"; }
fault_off() { : >"$FAULTS.tmp" && mv "$FAULTS.tmp" "$FAULTS"; }
injected() { grep -c '^errfs: EIO' "$T/errfs.log" || true; }

BLK=$((BAD_OFF / CB * CB))          # the cache block holding the fault
for mode in writeback writethrough none; do
	fault_off
	iscsifs_mount "$(tgt_url "$IQN" 1)" "$M" -o "cache=$mode"
	before=$(injected)
	fault_on
	# The bad range, directly and buffered, and a read that only overlaps it.
	reads "$mode: bad range" "EIO EIO EIO" d$BAD_OFF:$BAD_LEN $BAD_OFF:$BAD_LEN \
		d$((BAD_OFF - 4096)):8192
	(($(injected) > before)) || fail "$mode: errfs injected no error: the EIO came from elsewhere"
	# Neighbours: with cache=none the sectors right next to the fault; with a cache,
	# the cache blocks on either side (the cache fetches whole blocks, so reads inside
	# the bad range's block may fail too — logged, not required either way).
	if [[ $mode == none ]]; then
		reads "$mode: neighbours" "ok ok ok ok" d$((BAD_OFF - 4096)):4096 \
			d$((BAD_OFF + BAD_LEN)):4096 $((BAD_OFF - 512)):512 $((BAD_OFF + BAD_LEN)):512
	else
		reads "$mode: neighbours" "ok ok ok ok" d$((BLK - CB)):$CB d$((BLK + CB)):$CB \
			$((BLK - 4096)):4096 $((BLK + CB)):4096
		log "$mode: a read elsewhere in the bad range's cache block:" \
			"$(run_bounded 60 python3 "$T/rd.py" "$M/lun1" "$DISK" d$BLK:4096)"
	fi
	# Again: the failed fetch did not leave anything valid in between.
	reads "$mode: bad range again" "EIO" d$BAD_OFF:$BAD_LEN
	pid_alive "$ISCSIFS_PID" || fail "$mode: the daemon died on a medium error"
	stats=$(cat "$M/.iscsifs/stats.json")
	python3 - "$stats" <<'EOF' || fail "$mode: stats.json: $stats"
import json, sys
l = json.loads(sys.argv[1])["luns"][0]["scsi"]
assert l["errors"] >= 1, "scsi.errors %d, want >= 1" % l["errors"]
assert l["retries"] == 0, "scsi.retries %d, want 0 (a medium error is not retried)" % l["retries"]
EOF
	grep -q 'medium error' "$DAEMON_LOG" || fail "$mode: the daemon did not log the medium error"

	fault_off
	reads "$mode: the range after the fault is gone" "ok ok ok ok" d$BAD_OFF:$BAD_LEN \
		$BAD_OFF:$BAD_LEN d$BLK:$CB d$((BLK - CB)):$((3 * CB))
	iscsifs_umount_ok "$M"
	pass "cache=$mode: MEDIUM ERROR -> EIO for the bad range, neighbours right, right data once the fault is gone"
done

# Orderly shutdown: tgtd lets go of the errfs file, then errfs unmounts.
tgt_stop
timeout -k 2 10 fusermount3 -u "$EFS" || fail "errfs could not be unmounted"
wait_for 10 eval '! pid_alive $EPID' || fail "errfs did not exit after its unmount"
