# shellcheck shell=bash
# tests/integration/lib_badtarget.sh — the misbehaving target (tests/target/badtarget.py)
# for the 'hostile' tests; sourced after lib.sh.
#
#   badtarget_start [ARGS...]   start it on a free loopback port with ARGS (--lun,
#                               --misbehave, ...); sets BT_PORTAL, BT_PORT, BT_IQN,
#                               BT_PID, BT_LOG, BT_COUNTERS, BT_CONTROL; ends with the test
#   badtarget_url [LUN]         iscsi://PORTAL/IQN[/LUN]
#   badtarget_misbehave on|off  switch the misbehaviours (waits until the target says so)
#   badtarget_counters          refresh $BT_COUNTERS (JSON) and print it
#   badtarget_counter PATH      one value of the counters: "commands.0x2a",
#                               "bytes_written.1", "nop_in_flood" (0 when absent)
#   badtarget_stop              SIGTERM, wait; the counters file is final afterwards
#
# and checks the hostile tests share:
#   bt_io OP FILE OFF LEN [ARGS]  one read/write through python (see below), prints
#                               "ok SECS [sha]" or "errno NAME SECS"
#   daemon_hwm_kb PID           the daemon's peak RSS (VmHWM) in KiB
#   hwm_limit_kb MB             MB, raised for sanitizer builds (their shadow memory)
#   check_log_says WHAT REGEX   the daemon's log matches REGEX (grep -Ei), else fail
#
# badtarget.py runs in the foreground, prints "PORT N" and writes --port-file when it
# listens, exits on SIGTERM (writing its counters), dumps its counters on SIGUSR2 and
# whenever the misbehaviour switches, and polls --control FILE ("on"/"off").

BT_PY=$SRCDIR/tests/target/badtarget.py
BT_IQN=iqn.2026-11.org.iscsifs.badtarget:disk
BT_PID=
BT_PORT=
BT_PORTAL=

# badtarget_start ARGS...: see above. Retries on another port if the bind races.
badtarget_start()
{
	local attempt portfile
	requires python3
	[[ -f $BT_PY ]] || fail "badtarget.py not found at $BT_PY"
	mkdir -p "$T/bt"
	BT_LOG=$T/bt/badtarget.log
	BT_COUNTERS=$T/bt/counters.json
	BT_CONTROL=$T/bt/control
	portfile=$T/bt/port
	for attempt in 1 2 3 4 5; do
		BT_PORT=$(_free_port 10000 32000) || fail "no free TCP port"
		rm -f "$portfile"
		printf '+ badtarget.py --port %s %s\n' "$BT_PORT" "$*" >>"$BT_LOG"
		python3 "$BT_PY" --host 127.0.0.1 --port "$BT_PORT" --port-file "$portfile" \
			--iqn "$BT_IQN" --counters "$BT_COUNTERS" --control "$BT_CONTROL" "$@" \
			</dev/null >>"$BT_LOG" 2>&1 &
		BT_PID=$!
		disown "$BT_PID" 2>/dev/null || true
		if wait_for 10 _bt_started "$portfile"; then
			if [[ -s $portfile ]]; then
				BT_PORTAL=127.0.0.1:$BT_PORT
				export BT_PORTAL BT_PORT BT_IQN BT_PID BT_LOG BT_COUNTERS BT_CONTROL
				_LOGS+=("$BT_LOG")
				cleanup_fn badtarget_stop
				log "badtarget pid $BT_PID on $BT_PORTAL: $*"
				return 0
			fi
		fi
		if grep -q 'Address already in use' "$BT_LOG"; then
			log "port $BT_PORT taken (attempt $attempt); retrying"
			continue
		fi
		tail -n 20 "$BT_LOG" >&2
		fail "badtarget.py did not start (see above)"
	done
	fail "badtarget.py: no free port after 5 attempts"
}

_bt_started() { [[ -s $1 ]] || ! pid_alive "$BT_PID"; }

# shellcheck disable=SC2120 # the LUN is optional
badtarget_url() { echo "iscsi://$BT_PORTAL/$BT_IQN${1:+/$1}"; }

# badtarget_stop: end the target (SIGTERM, then SIGKILL after 5 s).
badtarget_stop()
{
	[[ -n ${BT_PID:-} ]] || return 0
	end_pid "$BT_PID" 5
	BT_PID=
}

_bt_json()
{
	python3 - "$BT_COUNTERS" "$1" <<'EOF'
import json, sys
doc = json.load(open(sys.argv[1]))
for part in sys.argv[2].split("."):
    doc = doc.get(part, 0) if isinstance(doc, dict) else 0
print(json.dumps(doc) if isinstance(doc, (dict, list, bool)) else doc)
EOF
}

_bt_json_is() { [[ $(_bt_json "$1") == "$2" ]]; }
_bt_json_is_not() { [[ $(_bt_json "$1") != "$2" ]]; }

# badtarget_counters: ask for a fresh dump (SIGUSR2), wait for it, print it.
badtarget_counters()
{
	local seq
	if [[ -n ${BT_PID:-} ]] && pid_alive "$BT_PID"; then
		seq=$(_bt_json seq)
		kill -USR2 "$BT_PID"
		wait_for 10 _bt_json_is_not seq "$seq" ||
			fail "badtarget did not dump its counters within 10 s"
	fi
	cat "$BT_COUNTERS"
}

# badtarget_counter PATH: one counter, fresh.
badtarget_counter()
{
	badtarget_counters >/dev/null
	_bt_json "$1"
}

# badtarget_misbehave on|off
badtarget_misbehave()
{
	local want
	case $1 in
	on) want=true ;;
	off) want=false ;;
	*) fail "badtarget_misbehave: on or off, not '$1'" ;;
	esac
	printf '%s\n' "$1" >"$BT_CONTROL.tmp"
	mv -f "$BT_CONTROL.tmp" "$BT_CONTROL"
	wait_for 10 _bt_json_is misbehaving "$want" ||
		fail "badtarget did not switch its misbehaviour $1 within 10 s"
	log "badtarget misbehaviour $1"
}

# bt_io OP FILE OFF LEN [--direct] [--expect BACKING] [--pattern SEED]:
# one pread/pwrite (+fsync for writes) through python, bounded by BT_IO_TIMEOUT
# (default 300 s). OP is read or write. Prints one line:
#   ok SECS SHA256            the call succeeded (SHA256 of the data read/written)
#   errno NAME SECS           it failed (EIO, ETIMEDOUT, ...)
#   short N SECS              a read returned N < LEN bytes
#   differ OFF SECS           read data differ from --expect BACKING at absolute OFF
#   timeout                   not finished within the bound
# --pattern SEED writes deterministic pseudo-random bytes (default seed 1).
# --expect for writes: nothing. The exit status is 0 in every case.
bt_io()
{
	local out rc=0
	out=$(timeout -k 5 "${BT_IO_TIMEOUT:-300}" python3 - "$@" <<'EOF'
import errno, hashlib, os, random, sys, time
op, path, off, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
args = sys.argv[5:]
direct = "--direct" in args
expect = args[args.index("--expect") + 1] if "--expect" in args else None
seed = int(args[args.index("--pattern") + 1]) if "--pattern" in args else 1
t0 = time.monotonic()
flags = os.O_RDWR if op == "write" else os.O_RDONLY
buf = None
if direct:
    import mmap
    flags |= os.O_DIRECT
    buf = mmap.mmap(-1, n)
try:
    fd = os.open(path, flags)
    try:
        if op == "read":
            if buf is not None:
                got = os.preadv(fd, [buf], off)
                data = bytes(buf[:got])
            else:
                data = os.pread(fd, n, off)
        else:
            data = random.Random(seed).randbytes(n)
            if buf is not None:
                buf[:] = data
                os.pwritev(fd, [buf], off)
            else:
                os.pwrite(fd, data, off)
            os.fsync(fd)
    finally:
        os.close(fd)
except OSError as e:
    print("errno %s %.2f" % (errno.errorcode.get(e.errno, e.errno), time.monotonic() - t0))
    sys.exit(0)
secs = time.monotonic() - t0
if op == "read" and len(data) < n:
    print("short %d %.2f" % (len(data), secs))
    sys.exit(0)
if op == "read" and expect:
    with open(expect, "rb") as f:
        f.seek(off)
        want = f.read(n)
    if data != want:
        first = next(i for i in range(n) if data[i] != want[i])
        print("differ %d %.2f" % (off + first, secs))
        sys.exit(0)
print("ok %.2f %s" % (secs, hashlib.sha256(data).hexdigest()[:16]))
EOF
) || rc=$?
	if ((rc == 124 || rc == 137)); then
		echo timeout
	else
		echo "$out"
	fi
}

# bt_pattern_file FILE LEN SEED: the bytes bt_io write ... --pattern SEED writes.
bt_pattern_file()
{
	python3 -c 'import random, sys; open(sys.argv[1], "wb").write(random.Random(int(sys.argv[3])).randbytes(int(sys.argv[2])))' \
		"$1" "$2" "$3"
}

# daemon_hwm_kb PID: VmHWM of PID in KiB (0 when gone).
daemon_hwm_kb()
{
	awk '/^VmHWM:/ { print $2; f = 1 } END { if (!f) print 0 }' "/proc/$1/status" 2>/dev/null || echo 0
}

# hwm_limit_kb MB: a memory bound in KiB; sanitizer builds get 3x + 512 MiB (shadow
# memory and ASan's quarantine of freed blocks count in the RSS).
hwm_limit_kb()
{
	local mb=$1
	if ldd "$ISCSIFS" 2>/dev/null | grep -q -e libasan -e libubsan; then
		mb=$((mb * 3 + 512))
	fi
	echo $((mb * 1024))
}

# check_log_says WHAT REGEX [LOG]: the daemon log (default $DAEMON_LOG) matches the
# extended REGEX, case-insensitively; otherwise fail, saying WHAT was expected.
check_log_says()
{
	local what=$1 re=$2 f=${3:-$DAEMON_LOG}
	if ! grep -Eiq -- "$re" "$f"; then
		fail "the daemon's log does not say $what (no line matches /$re/i)"
	fi
}

# secs_le A B: A <= B for decimal seconds.
secs_le() { awk -v a="$1" -v b="$2" 'BEGIN { exit !(a <= b) }'; }
