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
# and a way to run a test's cases in child processes (hostile_case, hostile_summary),
# so that one failing case does not hide the others.
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
				if [[ -z ${_BT_REGISTERED:-} ]]; then
					_LOGS+=("$BT_LOG")
					cleanup_fn badtarget_stop
					_BT_REGISTERED=1
				fi
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
# The python process writes to a file, not to a pipe: a process stuck in a FUSE
# request (state D) ignores SIGKILL and would hold a command substitution's pipe open.
# Past the bound it is left to the cleanup (aborting the mount releases it).
bt_io()
{
	local out=$T/bt_io.$BASHPID.$RANDOM pid
	python3 - "$@" >"$out" 2>&1 <<'EOF' &
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
	pid=$!
	if wait_for "${BT_IO_TIMEOUT:-300}" _bt_gone "$pid"; then
		wait "$pid" 2>/dev/null || true
		tail -n 1 "$out"
	else
		kill -KILL "$pid" 2>/dev/null || true
		echo timeout
	fi
	rm -f "$out"
}

_bt_gone() { ! pid_alive "$1"; }

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

# is_sanitized: $ISCSIFS is an ASan/UBSan build.
is_sanitized() { ldd "$ISCSIFS" 2>/dev/null | grep -q -e libasan -e libubsan; }

# hwm_limit_kb MB: a memory bound in KiB; sanitizer builds get 3x + 512 MiB (shadow
# memory and ASan's quarantine of freed blocks count in the RSS), or only 3x when
# the test limited the quarantine (ASAN_QUARANTINE_LIMITED=1, see asan_small_quarantine).
hwm_limit_kb()
{
	local mb=$1
	if is_sanitized; then
		if [[ -n ${ASAN_QUARANTINE_LIMITED:-} ]]; then
			mb=$((mb * 3))
		else
			mb=$((mb * 3 + 512))
		fi
	fi
	echo $((mb * 1024))
}

# asan_small_quarantine: for tests that bound memory growth: daemons started after this
# keep at most 4 MiB of freed blocks in ASan's quarantine, so their RSS means something.
asan_small_quarantine()
{
	is_sanitized || return 0
	export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}quarantine_size_mb=4:thread_local_quarantine_size_kb=256"
	ASAN_QUARANTINE_LIMITED=1
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

# ------------------------------------------------------------------ hostile checks
#
# The checks below encode issue 9's rule: the only success is GOOD status with every
# byte accounted for; anything else is EIO for the reader or writer, within the
# documented budget (replacement_timeout + cmd_timeout, plus slack), and nothing stale
# stays cached. The mount uses small timeouts so the bounds are short:
: "${HOSTILE_CMD_TIMEOUT:=5}" "${HOSTILE_REPLACEMENT:=5}"
HOSTILE_OPTS="cmd_timeout=$HOSTILE_CMD_TIMEOUT,replacement_timeout=$HOSTILE_REPLACEMENT"
HOSTILE_OPTS+=",noop_interval=2,noop_timeout=2,login_timeout=5,cache_size=16M"
# every request completes, with EIO at worst, within this (10 s slack)
HOSTILE_BOUND=$((HOSTILE_REPLACEMENT + HOSTILE_CMD_TIMEOUT + 10))

# hostile_mount [LUN] [EXTRA-OPTS]: mount the target (or one LUN) on $M with
# HOSTILE_OPTS; records the daemon's VmHWM in HWM_AT_MOUNT (KiB).
# shellcheck disable=SC2120 # both arguments are optional
hostile_mount()
{
	iscsifs_mount "$(badtarget_url "${1:-}")" "$M" -o "$HOSTILE_OPTS${2:+,$2}"
	HWM_AT_MOUNT=$(daemon_hwm_kb "$ISCSIFS_PID")
}

# hostile_umount: fusermount3 -u; the daemon must exit within HOSTILE_BOUND + 20 s
# (it may report data it could not write: any exit status is accepted, printed).
hostile_umount()
{
	local rc=0 start=$SECONDS
	UMOUNT_TIMEOUT=$((HOSTILE_BOUND + 20)) iscsifs_umount "$M" || rc=$?
	((rc != 124)) || fail "the daemon was still running $((HOSTILE_BOUND + 20)) s after" \
		"fusermount3 -u (bound: replacement_timeout + cmd_timeout + 30 s)"
	log "unmounted; the daemon exited (status $rc) $((SECONDS - start)) s after fusermount3 -u"
}

# check_hwm LIMIT_MB: the daemon's peak RSS stays under LIMIT_MB (raised for sanitizer
# builds by hwm_limit_kb).
check_hwm()
{
	local hwm lim
	hwm=$(daemon_hwm_kb "$ISCSIFS_PID")
	lim=$(hwm_limit_kb "$1")
	((hwm <= lim)) || fail "the daemon's peak RSS (VmHWM) is $((hwm / 1024)) MiB," \
		"above the bound of $((lim / 1024)) MiB (it was $((${HWM_AT_MOUNT:-0} / 1024)) MiB after the mount)"
	log "daemon VmHWM $((hwm / 1024)) MiB (bound $((lim / 1024)) MiB)"
}

# expect_io_eio WHAT OP FILE OFF LEN [bt_io ARGS]: the read or write (+fsync) must fail
# with EIO within HOSTILE_BOUND seconds; WHAT says what the target did. On failure,
# say exactly what the caller saw: success, wrong bytes (first differing offset), a
# short read, another errno, or no answer at all.
expect_io_eio()
{
	local what=$1 op=$2 file=$3 off=$4 len=$5 out kind name secs
	shift 5
	out=$(BT_IO_TIMEOUT=$((HOSTILE_BOUND + 60)) bt_io "$op" "$file" "$off" "$len" "$@")
	read -r kind name secs <<<"$out"
	case $kind in
	errno)
		[[ $name == EIO ]] || fail "$op of $len bytes at $off while the target $what:" \
			"failed with $name after $secs s, want EIO"
		secs_le "$secs" "$HOSTILE_BOUND" || fail "$op of $len bytes at $off while the" \
			"target $what: EIO only after $secs s, want within $HOSTILE_BOUND s" \
			"(replacement_timeout $HOSTILE_REPLACEMENT + cmd_timeout $HOSTILE_CMD_TIMEOUT + 10)"
		log "ok: $op of $len bytes at $off while the target $what: EIO after $secs s"
		;;
	ok)
		fail "$op of $len bytes at $off while the target $what: SUCCEEDED" \
			"(rc 0 after $name s), want EIO"
		;;
	differ)
		fail "$op of $len bytes at $off while the target $what: rc 0 with WRONG" \
			"BYTES (first differing from the target's at offset $name), want EIO"
		;;
	short)
		fail "$op of $len bytes at $off while the target $what: a short read of" \
			"$name bytes, want EIO"
		;;
	timeout)
		fail "$op of $len bytes at $off while the target $what: no answer within" \
			"$((HOSTILE_BOUND + 60)) s, want EIO within $HOSTILE_BOUND s"
		;;
	*) fail "$op of $len bytes at $off: unexpected output '$out'" ;;
	esac
}

# expect_read_ok WHY FILE OFF LEN BACKING [ARGS]: the read succeeds with the backing
# file's bytes (e.g. after the target behaves again: nothing stale was cached).
expect_read_ok()
{
	local why=$1 file=$2 off=$3 len=$4 backing=$5 out
	shift 5
	out=$(BT_IO_TIMEOUT=$((HOSTILE_BOUND + 60)) bt_io read "$file" "$off" "$len" --expect "$backing" "$@")
	case $out in
	ok*) log "ok: read of $len bytes at $off $why: the target's bytes" ;;
	differ*) fail "read of $len bytes at $off $why: WRONG BYTES, first differing from the" \
		"target's at offset $(cut -d' ' -f2 <<<"$out") (stale data returned or cached)" ;;
	*) fail "read of $len bytes at $off $why: $out, want the target's bytes" ;;
	esac
}

# iscsifs_try_mount URL MNT [ARGS...]: like iscsifs_mount, but a daemon that exits is
# no failure: returns 0 mounted (ISCSIFS_PID, DAEMON_LOG set), 1 the daemon exited
# (TRY_RC = its status, TRY_SECS = after how long), 124 neither within
# TRY_MOUNT_TIMEOUT s (default 60; the daemon is left running and cleaned up at exit).
# shellcheck disable=SC2004,SC2034 # _MNT_* are lib.sh's associative arrays; TRY_* for the caller
iscsifs_try_mount()
{
	local url=$1 mnt start=$SECONDS
	mnt=$(realpath -m "$2")
	shift 2
	requires_fuse
	mkdir -p "$mnt"
	_NMOUNT=$((_NMOUNT + 1))
	DAEMON_LOG=$T/iscsifs.$_NMOUNT.log
	printf '+ %s -f %s %s %s\n' "$ISCSIFS" "$*" "$url" "$mnt" >"$DAEMON_LOG"
	"$ISCSIFS" -f "$@" "$url" "$mnt" </dev/null >>"$DAEMON_LOG" 2>&1 &
	ISCSIFS_PID=$!
	_MOUNTS+=("$mnt")
	_MNT_PID[$mnt]=$ISCSIFS_PID
	_MNT_LOG[$mnt]=$DAEMON_LOG
	_LOGS+=("$DAEMON_LOG")
	TRY_RC=
	wait_for "${TRY_MOUNT_TIMEOUT:-60}" _bt_mounted_or_gone "$mnt" || true
	TRY_SECS=$((SECONDS - start))
	if is_fuse_mounted "$mnt"; then
		HWM_AT_MOUNT=$(daemon_hwm_kb "$ISCSIFS_PID")
		return 0
	fi
	if ! pid_alive "$ISCSIFS_PID"; then
		TRY_RC=0
		wait "$ISCSIFS_PID" || TRY_RC=$?
		unset "_MNT_PID[$mnt]"
		return 1
	fi
	return 124
}

_bt_mounted_or_gone() { is_fuse_mounted "$1" || ! pid_alive "$ISCSIFS_PID"; }

# cpu_ticks PID: user + system CPU time of PID in clock ticks.
cpu_ticks() { awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$1/stat" 2>/dev/null || echo 0; }

# ----------------------------------------------------------------------- cases
#
# A test with several cases calls `hostile_dispatch "$@"` once its functions are
# defined, then `hostile_case FN ARGS...` per case, then `hostile_summary`. Each case
# runs as `bash TEST --case FN ARGS...`: a child with its own $T, target, mount and
# cleanup; the parent reports every case and fails when any failed.
_H_PASS=() _H_FAIL=() _H_SKIP=()

hostile_dispatch()
{
	if [[ ${1:-} == --case ]]; then
		shift
		"$@"
		exit 0
	fi
}

hostile_case()
{
	local rc=0
	log "=== case: $*"
	bash "$0" --case "$@" || rc=$?
	case $rc in
	0) _H_PASS+=("$*") ;;
	77) _H_SKIP+=("$*") ;;
	*) _H_FAIL+=("$* (exit $rc)") ;;
	esac
}

hostile_summary()
{
	local c
	log "=== ${#_H_PASS[@]} case(s) passed, ${#_H_FAIL[@]} failed, ${#_H_SKIP[@]} skipped"
	for c in "${_H_FAIL[@]}"; do
		printf 'FAILED CASE: %s\n' "$c" >&2
	done
	((${#_H_FAIL[@]} == 0)) || exit 1
	((${#_H_PASS[@]} > 0)) || exit 77
}
