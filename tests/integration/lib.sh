# shellcheck shell=bash
# tests/integration/lib.sh — the harness every integration test sources.
#
# Each test gets a private world and leaves nothing behind:
#   $T           a fresh temporary directory (backing files, logs, mountpoints)
#   tgt_start    a private tgtd on a free 127.0.0.1 port, whose management socket lives in
#                $T (TGT_IPC_SOCKET), so tests run in parallel and beside any system tgtd
#   iscsifs_mount / iscsifs_umount
#                the daemon under test ($ISCSIFS, set by meson) in the foreground, in
#                the background, one log per mount
# and an EXIT/INT/TERM trap that unmounts every mount, stops every daemon, runs the
# functions given to cleanup_fn, kills tgtd and removes $T.
#
# Conventions: every helper that can block is bounded with `timeout`; a test fails
# loudly through `fail MSG` (exit 1, with the daemon's log tail), and skips with exit
# 77 only when a tool is truly unavailable (`requires`) or it is not root.
#
# Facts about tgt 1.0.85 (Debian 12) this relies on, all checked by hand:
#  - tgtd puts its management socket at "$TGT_IPC_SOCKET.<control port>" (default
#    /var/run/tgtd/socket.<port>) with a lockf() lock file "<that>.lock"; tgtadm finds
#    the socket the same way. A private TGT_IPC_SOCKET therefore isolates instances
#    completely; the control port is only a name suffix, no TCP port is opened for it.
#  - when the portal's port is taken tgtd logs "failed to create/bind to portal" and
#    keeps running without it, so tgt_start checks `--op show --mode portal`.
#  - tgtd ignores SIGTERM. It stops with `--op delete --mode system`, which fails while
#    targets exist: set State offline and delete them (--force) first — or SIGKILL.
#  - `--blocksize 4096` (-y) on `--op new --mode logicalunit` sets the logical block
#    size (READ CAPACITY(16) reports 4096; LBPPBE 0), the default is 512 (LBPPBE 3).
#  - LUN 0 of every target is a controller (peripheral type 0x0c, no backing store).
#  - `--op update --mode logicalunit --params readonly=1` makes a LUN write-protected.

set -eEu -o pipefail
export LC_ALL=C

TEST_NAME=$(basename "$0" .sh)
: "${SRCDIR:=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}"
: "${ISCSIFS:=$SRCDIR/build/iscsifs}"
export SRCDIR ISCSIFS

# Bounds, in seconds; override from the environment to debug.
: "${MOUNT_TIMEOUT:=20}"    # iscsifs_mount: until the mount appears
: "${UMOUNT_TIMEOUT:=60}"   # iscsifs_umount: until the daemon has written back and exited
: "${TGT_TIMEOUT:=10}"      # tgt_start: until tgtadm answers; each tgtadm call
: "${EXPECT_TIMEOUT:=30}"   # expect_fail_msg: until the command has failed

# ---------------------------------------------------------------------------- basics

# log MSG...: progress on stdout (meson keeps it in the test log).
log() { printf '%s: %s\n' "$TEST_NAME" "$*"; }

pass() { printf 'PASS: %s\n' "$*"; }

# fail MSG...: say what went wrong, show the tail of every daemon log, exit 1.
fail()
{
	printf 'FAIL: %s\n' "$*" >&2
	_show_daemon_logs >&2
	exit 1
}

skip() { printf 'SKIP: %s\n' "$*"; exit 77; }

# requires CMD...: skip the test (exit 77) when a command is not installed.
requires()
{
	local c
	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 || skip "$c not available"
	done
}

requires_root()
{
	((EUID == 0)) || skip "needs root (a private tgtd: tgtadm only obeys root)"
}

# requires_fuse: /dev/fuse and fusermount3 are there.
requires_fuse()
{
	requires fusermount3
	[[ -c /dev/fuse ]] || skip "/dev/fuse not available"
}

# run_bounded SECS CMD...: CMD with a time bound; says so when the bound hit.
run_bounded()
{
	local secs=$1 rc=0
	shift
	timeout -k 5 "$secs" "$@" || rc=$?
	if ((rc == 124 || rc == 137)); then
		printf 'timed out after %s s: %s\n' "$secs" "$*" >&2
	fi
	return "$rc"
}

# pid_alive PID: the process exists and is not a zombie.
pid_alive()
{
	local stat
	stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
	stat=${stat##*) }
	[[ ${stat%% *} != [ZX] ]]
}

# wait_for SECS CMD...: poll CMD every 0.1 s until it succeeds; 1 if SECS pass first.
wait_for()
{
	local deadline=$((SECONDS + $1))
	shift
	until "$@"; do
		((SECONDS < deadline)) || return 1
		sleep 0.1
	done
}

# -------------------------------------------------------------------- temp & cleanup

_T_PARENT=${TMPDIR:-/tmp}
# The tgtd socket path must fit sockaddr_un (108 bytes): keep $T short.
((${#_T_PARENT} <= 60)) || _T_PARENT=/tmp
T=$(mktemp -d "$_T_PARENT/iscsifs-test.XXXXXX")
export T
# iscsifs keeps its per-LUN locks in $XDG_RUNTIME_DIR/iscsifs (lunlock.h): a private
# runtime directory per test, so tests running at once, each with its own tgtd (whose
# LUN designators repeat from one tgtd to the next), never refuse each other's mounts.
export XDG_RUNTIME_DIR=$T/run
mkdir -m 0700 "$XDG_RUNTIME_DIR"

_MOUNTS=()              # every mountpoint we mounted, in order
declare -A _MNT_PID=()  # mountpoint -> pid of the process serving it (if ours)
declare -A _MNT_LOG=()  # mountpoint -> that process's log
_LOGS=()                # daemon logs, shown by fail
declare -A _REPORTED=() # daemon logs whose sanitizer report was already shown
_PIDS=()                # other background processes to end
_CLEANUP_FNS=()
_NMOUNT=0
DAEMON_LOG=             # log of the last iscsifs_mount
ISCSIFS_PID=            # pid of the last iscsifs_mount

# cleanup_fn CMD [ARGS...]: run CMD at exit, before mounts and tgtd go (last in, first
# out).
cleanup_fn()
{
	local q
	printf -v q '%q ' "$@"
	_CLEANUP_FNS+=("$q")
}

# track_pid PID: end PID (SIGTERM, then SIGKILL) at exit.
track_pid() { _PIDS+=("$1"); }

# track_mount MNT [PID [LOG]]: unmount MNT at exit (e.g. a fuse2fs mount on a LUN file);
# PID is the process serving it, ended after the unmount.
track_mount()
{
	_MOUNTS+=("$(realpath -m "$1")")
	[[ -z ${2:-} ]] || _MNT_PID[$(realpath -m "$1")]=$2
	[[ -z ${3:-} ]] || { _MNT_LOG[$(realpath -m "$1")]=$3; _LOGS+=("$3"); }
}

_show_daemon_logs()
{
	local f
	for f in "${_LOGS[@]}"; do
		[[ -s $f ]] || continue
		printf -- '--- last 30 lines of %s ---\n' "$f"
		tail -n 30 "$f"
	done
	if [[ -n ${TGT_LOG:-} && -s $TGT_LOG ]] && grep -qv -e RDMA -e oom-killer -e nr_open \
		-e work_timer_start -e bs_init -e device_mgmt -e bs_thread_open "$TGT_LOG"; then
		printf -- '--- last 10 lines of %s ---\n' "$TGT_LOG"
		tail -n 10 "$TGT_LOG"
	fi
}

# end_pid PID [GRACE]: SIGTERM, wait up to GRACE s (default 10), SIGKILL; reap it.
end_pid()
{
	local pid=$1 grace=${2:-10}
	if pid_alive "$pid"; then
		kill -TERM "$pid" 2>/dev/null || true
		if ! wait_for "$grace" eval '! pid_alive '"$pid"; then
			echo "pid $pid ignored SIGTERM for ${grace} s: SIGKILL" >&2
			kill -KILL "$pid" 2>/dev/null || true
			wait_for 5 eval '! pid_alive '"$pid" || true
		fi
	fi
	wait "$pid" 2>/dev/null || true
}

# is_mounted MNT [FSTYPE-REGEX]: MNT is a mountpoint (of that type) in /proc/mounts.
# Reads /proc/mounts only, so it never blocks on a hung FUSE daemon.
is_mounted()
{
	local m
	m=$(realpath -m "$1")
	awk -v m="$m" -v t="${2:-.}" '$2 == m && $3 ~ t { f = 1 } END { exit !f }' /proc/mounts
}

is_fuse_mounted() { is_mounted "$1" '^fuse'; }

# _fuse_abort MNT [PID]: cut MNT's FUSE connection so that processes blocked on a dead
# or hung daemon get ENOTCONN: end the serving PID (SIGTERM, then SIGKILL: closing
# /dev/fuse aborts the connection), or write to fusectl's abort file where fusectl is mounted. Reads
# mountinfo only, never touches the mount itself.
_fuse_abort()
{
	local m dev
	if [[ -n ${2:-} ]] && pid_alive "$2"; then
		end_pid "$2" 5 # SIGTERM first: the daemon may still write back
		return 0
	fi
	m=$(realpath -m "$1")
	dev=$(awk -v m="$m" '$5 == m { print $3 }' /proc/self/mountinfo | tail -n 1)
	if [[ -n $dev && -w /sys/fs/fuse/connections/${dev#*:}/abort ]]; then
		echo 1 >"/sys/fs/fuse/connections/${dev#*:}/abort" 2>/dev/null || true
	fi
}

# _unmount_one MNT: bounded unmount that always ends with MNT unmounted or detached.
_unmount_one()
{
	local m=$1
	is_mounted "$m" || return 0
	timeout -k 2 10 fusermount3 -u "$m" 2>/dev/null ||
		timeout -k 2 10 umount "$m" 2>/dev/null || true
	is_mounted "$m" || return 0
	echo "cleanup: $m busy or hung: aborting its FUSE connection, lazy unmount" >&2
	_fuse_abort "$m" "${_MNT_PID[$m]:-}"
	timeout -k 2 10 fusermount3 -uz "$m" 2>/dev/null ||
		timeout -k 2 10 umount -l "$m" 2>/dev/null || true
}

_cleanup()
{
	local rc=$? i m pid
	trap - EXIT INT TERM ERR
	set +eE
	for ((i = ${#_CLEANUP_FNS[@]} - 1; i >= 0; i--)); do
		eval "${_CLEANUP_FNS[i]}" || echo "cleanup: ${_CLEANUP_FNS[i]}failed" >&2
	done
	for ((i = ${#_MOUNTS[@]} - 1; i >= 0; i--)); do
		m=${_MOUNTS[i]}
		_unmount_one "$m"
		pid=${_MNT_PID[$m]:-}
		if [[ -n $pid ]]; then
			# After the unmount the daemon exits on its own (writing back first).
			wait_for 10 eval '! pid_alive '"$pid" || end_pid "$pid" 5
			wait "$pid" 2>/dev/null
		fi
	done
	for pid in "${_PIDS[@]}"; do
		end_pid "$pid" 5
	done
	[[ -z ${TGT_PID:-} ]] || _tgt_kill_now
	# Sanitizer reports can come from a daemon that was never unmounted cleanly.
	for m in "${_LOGS[@]}"; do
		if [[ -f $m && -z ${_REPORTED[$m]:-} ]] && grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$m"; then
			echo "FAIL: sanitizer report in $m:" >&2
			grep -A 30 -E 'ERROR: (Address|Leak)Sanitizer|runtime error:' "$m" | head -n 60 >&2
			((rc != 0 && rc != 77)) || rc=1
		fi
	done
	if [[ -n ${KEEP_T:-} ]]; then
		echo "cleanup: keeping $T (KEEP_T set)" >&2
	elif grep -qF " $T/" /proc/mounts; then
		echo "cleanup: something is still mounted under $T; not removing it" >&2
		((rc != 0)) || rc=1
	else
		rm -rf --one-file-system "$T"
	fi
	exit "$rc"
}

_on_err()
{
	local rc=$1 line=$2 cmd=$3
	printf 'FAIL: %s:%s: command exited with status %s: %s\n' \
		"$(basename "${BASH_SOURCE[1]:-$0}")" "$line" "$rc" "$cmd" >&2
	((BASH_SUBSHELL > 0)) || _show_daemon_logs >&2
}

trap _cleanup EXIT
trap 'echo "$TEST_NAME: interrupted (SIGINT)" >&2; exit 130' INT
trap 'echo "$TEST_NAME: terminated (SIGTERM)" >&2; exit 143' TERM
trap '_on_err $? $LINENO "$BASH_COMMAND"' ERR

# ---------------------------------------------------------------------------- checks

# expect_fail_msg SUBSTRING CMD...: CMD must exit non-zero (not by timeout) within
# EXPECT_TIMEOUT s, and its stderr must contain SUBSTRING (case-insensitive; "" accepts
# any). Sets EXPECT_RC, EXPECT_STDERR (text), EXPECT_SECS for further checks.
expect_fail_msg()
{
	local want=$1 out=$T/expect.out err=$T/expect.err start
	shift
	start=$(date +%s.%N)
	EXPECT_RC=0
	timeout -k 5 "$EXPECT_TIMEOUT" "$@" </dev/null >"$out" 2>"$err" || EXPECT_RC=$?
	EXPECT_SECS=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
	# shellcheck disable=SC2034 # for the caller
	EXPECT_STDERR=$(cat "$err")
	local why=
	if ((EXPECT_RC == 0)); then
		why="succeeded, expected failure"
	elif ((EXPECT_RC == 124 || EXPECT_RC == 137)); then
		why="did not finish within ${EXPECT_TIMEOUT} s"
	elif [[ -n $want ]] && ! grep -qiF -- "$want" "$err"; then
		why="exited $EXPECT_RC, but stderr lacks \"$want\""
	fi
	if [[ -n $why ]]; then
		printf 'FAIL: %s: %s\n--- stdout ---\n%s\n--- stderr ---\n%s\n' \
			"$*" "$why" "$(head -c 4000 "$out")" "$(head -c 4000 "$err")" >&2
		_show_daemon_logs >&2
		exit 1
	fi
	log "ok (exit $EXPECT_RC, ${EXPECT_SECS}s): $* -> $(head -n 1 "$err")"
}

# check_cmp A B [LEN [SKIP_A [SKIP_B]]]: the bytes are equal (B may be /dev/zero: then
# LEN defaults to the rest of A); otherwise fail naming
# the first differing offset (absolute in A), how many bytes differ, and a hex dump of
# both around it.
check_cmp()
{
	local a=$1 b=$2 len=${3:-} sa=${4:-0} sb=${5:-${4:-0}} out first ndiff off
	local -a n=()
	# Against a device such as /dev/zero, compare the regular file's length.
	if [[ -z $len && ! -f $b ]]; then
		len=$(($(stat -c %s "$a") - sa))
	elif [[ -z $len && ! -f $a ]]; then
		len=$(($(stat -c %s "$b") - sb))
	fi
	[[ -z $len ]] || n=(-n "$len")
	if out=$(run_bounded 300 cmp -i "$sa:$sb" "${n[@]}" -- "$a" "$b" 2>&1); then
		return 0
	fi
	# "A B differ: byte N, line M" (N is 1-based, after the skip), or EOF on X.
	first=$(sed -n 's/.*differ: byte \([0-9]*\).*/\1/p; s/.*differ: char \([0-9]*\).*/\1/p' <<<"$out")
	if [[ -z $first ]]; then
		fail "cmp $a $b: $out"
	fi
	off=$((first - 1))
	ndiff=$(set +o pipefail; cmp -l -i "$sa:$sb" "${n[@]}" -- "$a" "$b" 2>/dev/null |
		head -n 1000000 | wc -l)
	{
		printf 'FAIL: %s and %s differ: first at offset %d (0x%x) of %s' \
			"$a" "$b" $((sa + off)) $((sa + off)) "$a"
		((sa == sb)) || printf ' / %d of %s' $((sb + off)) "$b"
		printf '; %s differing bytes%s\n' "$ndiff" "$( ((ndiff < 1000000)) || echo ' or more')"
		printf -- '--- %s at 0x%x ---\n' "$a" $(((sa + off) & ~15))
		od -A x -t x1z -j $(((sa + off) & ~15)) -N 64 -- "$a"
		printf -- '--- %s at 0x%x ---\n' "$b" $(((sb + off) & ~15))
		od -A x -t x1z -j $(((sb + off) & ~15)) -N 64 -- "$b"
	} >&2
	_show_daemon_logs >&2
	exit 1
}

# check_eq WHAT GOT WANT: fail "WHAT: got GOT, want WANT" when they differ.
check_eq()
{
	[[ $2 == "$3" ]] || fail "$1: got '$2', want '$3'"
}

# ------------------------------------------------------------------------------- tgt

TGT_HOST=127.0.0.1

# _free_port LO HI: a random TCP port in [LO, HI) with no socket on it right now. Ports
# below the ephemeral range (32768+) never collide with outgoing connections; the race
# with another process taking it before tgtd binds is handled by tgt_start's retries.
_free_port()
{
	local lo=$1 hi=$2 p i
	for ((i = 0; i < 200; i++)); do
		p=$((lo + (RANDOM * 32768 + RANDOM) % (hi - lo)))
		if [[ -z $(ss -Htan "( sport = :$p )" 2>/dev/null) ]]; then
			echo "$p"
			return 0
		fi
	done
	return 1
}

# tgt_adm ARGS...: tgtadm on our tgtd, bounded; fails the test on error.
tgt_adm()
{
	local out rc=0
	out=$(TGT_IPC_SOCKET=$TGT_IPC_SOCKET timeout -k 2 "$TGT_TIMEOUT" \
		tgtadm -C "$TGT_CPORT" --lld iscsi "$@" 2>&1) || rc=$?
	if ((rc != 0)); then
		fail "tgtadm $* -> exit $rc: $out"
	fi
	[[ -z $out ]] || printf '%s\n' "$out"
}

# _tgt_cfg ARGS...: tgt_adm, and remember ARGS for tgt_restart to replay.
_tgt_cfg()
{
	tgt_adm "$@"
	printf '%q ' "$@" >>"$T/tgt/config.log"
	printf '\n' >>"$T/tgt/config.log"
}

_tgt_answers()
{
	TGT_IPC_SOCKET=$TGT_IPC_SOCKET timeout -k 1 2 \
		tgtadm -C "$TGT_CPORT" --lld iscsi --op show --mode target >/dev/null 2>&1
}

# _tgt_launch: start tgtd on TGT_PORT/TGT_CPORT; 0 when it answers and holds the portal,
# 2 when the portal's port was taken (caller may pick another), 1 otherwise.
_tgt_launch()
{
	local from portals
	from=$(($(stat -c %s "$TGT_LOG" 2>/dev/null || echo 0) + 1))
	# -p names $T on the command line: .ci/run recognises an orphan of ours by it.
	tgtd -f -p "$T/tgt/tgtd.pid" --iscsi "portal=$TGT_HOST:$TGT_PORT" \
		--control-port "$TGT_CPORT" </dev/null >>"$TGT_LOG" 2>&1 &
	TGT_PID=$!
	# Not a job of ours: no "Killed" notice from bash when tests kill it on purpose.
	disown "$TGT_PID"
	export TGT_PID
	if ! wait_for "$TGT_TIMEOUT" eval '_tgt_answers || ! pid_alive $TGT_PID'; then
		echo "tgtd (pid $TGT_PID) did not answer tgtadm within ${TGT_TIMEOUT} s" >&2
		_tgt_kill_now
		return 1
	fi
	if ! pid_alive "$TGT_PID"; then
		wait "$TGT_PID" 2>/dev/null || true
		echo "tgtd exited at start:" >&2
		tail -c +"$from" "$TGT_LOG" | tail -n 10 >&2
		TGT_PID=
		tail -c +"$from" "$TGT_LOG" | grep -q 'Address already in use' && return 2
		return 1
	fi
	portals=$(TGT_IPC_SOCKET=$TGT_IPC_SOCKET timeout 2 tgtadm -C "$TGT_CPORT" --lld iscsi \
		--op show --mode portal 2>&1 || true)
	if ! grep -qF "Portal: $TGT_HOST:$TGT_PORT," <<<"$portals" ||
		tail -c +"$from" "$TGT_LOG" | grep -q 'failed to create/bind to portal'; then
		_tgt_kill_now
		return 2
	fi
	return 0
}

# tgt_start: a private tgtd on a free loopback port. Exports TGT_PORT, TGT_CPORT,
# TGT_PID, TGT_PORTAL, TGT_IPC_SOCKET, TGT_LOG.
tgt_start()
{
	local attempt rc
	requires_root
	requires tgtd tgtadm ss
	mkdir -p "$T/tgt"
	: >"$T/tgt/config.log"
	TGT_IPC_SOCKET=$T/tgt/ipc
	TGT_LOG=$T/tgt/tgtd.log
	export TGT_IPC_SOCKET TGT_LOG
	for attempt in 1 2 3 4 5 6 7 8 9 10; do
		TGT_PORT=$(_free_port 10000 32000) || fail "no free TCP port"
		# Any control port would do (the socket is private); keep it < 32768.
		TGT_CPORT=$((1024 + RANDOM % 31000))
		export TGT_PORT TGT_CPORT
		rc=0
		_tgt_launch || rc=$?
		case $rc in
		0)
			TGT_PORTAL=$TGT_HOST:$TGT_PORT
			export TGT_PORTAL
			log "tgtd pid $TGT_PID on $TGT_PORTAL, control port $TGT_CPORT"
			return 0
			;;
		2) log "port $TGT_PORT taken under us (attempt $attempt); retrying" ;;
		*) fail "tgtd did not start (see $TGT_LOG)" ;;
		esac
	done
	fail "tgtd: no free port after 10 attempts"
}

_tgt_kill_now()
{
	[[ -n ${TGT_PID:-} ]] || return 0
	kill -KILL "$TGT_PID" 2>/dev/null || true
	wait_for 5 eval '! pid_alive $TGT_PID' || true
	wait "$TGT_PID" 2>/dev/null || true
	TGT_PID=
}

# tgt_stop: orderly stop (State offline, delete targets, delete system; connections are
# closed), SIGKILL if that does not end it within 5 s.
tgt_stop()
{
	local tid
	[[ -n ${TGT_PID:-} ]] || return 0
	if pid_alive "$TGT_PID"; then
		local A=(env "TGT_IPC_SOCKET=$TGT_IPC_SOCKET" timeout -k 1 5 tgtadm -C "$TGT_CPORT" --lld iscsi)
		"${A[@]}" --op update --mode sys --name State -v offline >/dev/null 2>&1 || true
		for tid in $("${A[@]}" --op show --mode target 2>/dev/null |
			sed -n 's/^Target \([0-9]*\):.*/\1/p'); do
			"${A[@]}" --op delete --force --mode target --tid "$tid" >/dev/null 2>&1 || true
		done
		"${A[@]}" --op delete --mode system >/dev/null 2>&1 || true
		wait_for 5 eval '! pid_alive $TGT_PID' || echo "tgtd did not stop: SIGKILL" >&2
	fi
	_tgt_kill_now
}

# tgt_kill9: the target dies without a goodbye (the kernel still closes its sockets).
tgt_kill9()
{
	[[ -n ${TGT_PID:-} ]] || fail "tgt_kill9: no tgtd running"
	_tgt_kill_now
}

# tgt_restart: stop tgtd if it runs, start it again on the same port and control port,
# and replay every configuration command made so far (targets, LUNs, ACLs, readonly).
tgt_restart()
{
	local line rc deadline=$((SECONDS + 20))
	tgt_stop
	while :; do
		rc=0
		_tgt_launch || rc=$?
		((rc == 0)) && break
		# The old socket can linger a moment; the port is ours, so keep trying.
		((rc == 2 && SECONDS < deadline)) || fail "tgt_restart: tgtd did not come back on $TGT_PORT"
		sleep 0.5
	done
	while IFS= read -r line; do
		[[ -n $line ]] || continue
		eval "tgt_adm $line" >/dev/null
	done <"$T/tgt/config.log"
	log "tgtd restarted: pid $TGT_PID on $TGT_PORTAL"
}

# tgt_target TID IQN: a new target, open to every initiator.
tgt_target()
{
	_tgt_cfg --op new --mode target --tid "$1" --targetname "$2"
	_tgt_cfg --op bind --mode target --tid "$1" --initiator-address ALL
}

# tgt_lun TID LUN FILE [BLOCKSIZE]: FILE (existing) as LUN of target TID; BLOCKSIZE is
# the logical block size (512 by default). FILE's size must be a multiple of it.
tgt_lun()
{
	local -a bs=()
	[[ -e $3 ]] || fail "tgt_lun: backing file $3 does not exist"
	[[ -z ${4:-} ]] || bs=(--blocksize "$4")
	_tgt_cfg --op new --mode logicalunit --tid "$1" --lun "$2" --backing-store "$3" "${bs[@]}"
}

# tgt_readonly TID LUN 0|1: write-protect (MODE SENSE WP) a LUN, or not.
tgt_readonly()
{
	_tgt_cfg --op update --mode logicalunit --tid "$1" --lun "$2" --params "readonly=$3"
}

# tgt_sparse FILE SIZE: a sparse backing file (SIZE as truncate takes it: 64M, 3T...).
tgt_sparse()
{
	rm -f "$1"
	truncate -s "$2" "$1"
}

# tgt_url IQN [LUN]: the iscsi:// URL of a target (or one LUN) on our tgtd.
tgt_url()
{
	echo "iscsi://$TGT_PORTAL/$1${2:+/$2}"
}

# -------------------------------------------------------------------------- iscsifs

# iscsifs_mount URL MNT [ARGS...]: `$ISCSIFS -f ARGS URL MNT` in the background, until
# MNT is a FUSE mount (bounded by MOUNT_TIMEOUT). Sets DAEMON_LOG and ISCSIFS_PID.
# Set ISCSIFS_DEBUG=1 to add -d.
iscsifs_mount()
{
	local url=$1 mnt rc
	mnt=$(realpath -m "$2")
	shift 2
	[[ -x $ISCSIFS ]] || fail "iscsifs binary $ISCSIFS missing (build first: ninja -C build)"
	requires_fuse
	mkdir -p "$mnt"
	_NMOUNT=$((_NMOUNT + 1))
	DAEMON_LOG=$T/iscsifs.$_NMOUNT.log
	local -a dbg=()
	[[ -z ${ISCSIFS_DEBUG:-} ]] || dbg=(-d)
	printf '+ %s -f %s %s %s\n' "$ISCSIFS" "${dbg[*]} $*" "$url" "$mnt" >"$DAEMON_LOG"
	"$ISCSIFS" -f "${dbg[@]}" "$@" "$url" "$mnt" </dev/null >>"$DAEMON_LOG" 2>&1 &
	ISCSIFS_PID=$!
	_MOUNTS+=("$mnt")
	_MNT_PID[$mnt]=$ISCSIFS_PID
	_MNT_LOG[$mnt]=$DAEMON_LOG
	_LOGS+=("$DAEMON_LOG")
	if ! wait_for "$MOUNT_TIMEOUT" eval 'is_fuse_mounted "$mnt" || ! pid_alive $ISCSIFS_PID'; then
		fail "iscsifs did not mount $url on $mnt within ${MOUNT_TIMEOUT} s"
	fi
	if ! is_fuse_mounted "$mnt"; then
		rc=0
		wait "$ISCSIFS_PID" || rc=$?
		fail "iscsifs exited with status $rc before mounting $url on $mnt"
	fi
	log "mounted $url on $mnt (pid $ISCSIFS_PID${*:+, $*})"
}

# iscsifs_umount MNT: fusermount3 -u, then wait (UMOUNT_TIMEOUT) for the daemon to write
# back and exit. Returns the daemon's exit status (1 when fusermount3 fails, 124 when
# the daemon does not exit in time). A sanitizer report in its log fails the test.
iscsifs_umount()
{
	local mnt pid rc=0 out
	mnt=$(realpath -m "$1")
	pid=${_MNT_PID[$mnt]:-}
	if ! out=$(timeout -k 2 30 fusermount3 -u "$mnt" 2>&1); then
		echo "iscsifs_umount: fusermount3 -u $mnt failed: $out" >&2
		return 1
	fi
	[[ -n $pid ]] || return 0
	if ! wait_for "$UMOUNT_TIMEOUT" eval '! pid_alive '"$pid"; then
		echo "iscsifs_umount: daemon $pid still running ${UMOUNT_TIMEOUT} s after unmount" >&2
		return 124
	fi
	wait "$pid" || rc=$?
	unset "_MNT_PID[$mnt]"
	if grep -qE 'ERROR: (Address|Leak)Sanitizer|runtime error:' "${_MNT_LOG[$mnt]}"; then
		_REPORTED[${_MNT_LOG[$mnt]}]=1
		fail "sanitizer report from the daemon of $mnt (exit status $rc)"
	fi
	return "$rc"
}

# iscsifs_umount_ok MNT: iscsifs_umount, failing the test unless the daemon exits 0.
iscsifs_umount_ok()
{
	local rc=0
	iscsifs_umount "$1" || rc=$?
	((rc == 0)) || fail "unmount of $1: daemon exit status $rc, want 0"
}

# ------------------------------------------------------------------------ net stubs

# netstub MODE VAR: a python process holding a loopback port, whose number goes to VAR.
#   refuse    bound, not listening: connecting gets RST (connection refused), and no
#             one else can take the port while the test runs
#   blackhole listening; accepts and never answers (a login that hangs)
#   hangup    listening; reads what comes, answers as an HTTP server would and closes
#             (a portal that is not iSCSI)
# It exits by itself after 10 minutes, and at cleanup.
netstub()
{
	local mode=$1 var=$2 portfile=$T/netstub.$RANDOM.port
	requires python3
	python3 - "$mode" "$portfile" </dev/null >/dev/null 2>&1 <<'EOF' &
import os, socket, sys, time
mode, portfile = sys.argv[1], sys.argv[2]
s = socket.socket()
s.bind(("127.0.0.1", 0))
if mode in ("blackhole", "hangup"):
    s.listen(16)
with open(portfile + ".tmp", "w") as f:
    f.write(str(s.getsockname()[1]))
os.rename(portfile + ".tmp", portfile)
held, end = [], time.time() + 600
s.settimeout(1)
while time.time() < end:
    if mode == "blackhole":
        try:
            held.append(s.accept()[0])
        except socket.timeout:
            pass
    elif mode == "hangup":
        try:
            c = s.accept()[0]
            c.settimeout(5)
            c.recv(4096)
            c.sendall(b"HTTP/1.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        except OSError:
            pass
        else:
            c.close()
    else:
        time.sleep(1)
EOF
	track_pid $!
	wait_for 10 test -s "$portfile" || fail "python3 $mode stub did not start"
	printf -v "$var" '%s' "$(cat "$portfile")"
}

# ------------------------------------------------------------------------- helpers

# bytes_of SIZE: 64M -> 67108864 (numfmt --from=iec).
bytes_of() { numfmt --from=iec "$1"; }

# tgt_standard IQN: target 1 named IQN with the LUN set most tests use, on sparse files
# $T/lunN.img. LUN_SIZE[N], LUN_BS[N], LUN_FILE[N] describe them; LUN_RO[N] is 1 for
# the write-protected one. LUN 0 is tgtd's controller and is not a disk.
#   1  64 MiB            512 B blocks
#   2  64 MiB            4096 B blocks
#   3  16 MiB            512 B, read-only
#   4  10 MiB + 3*512    512 B, a size that is no multiple of 64 KiB (the cache block)
#   5  10 MiB + 3*4096   4096 B, likewise
#   6  3 TiB, sparse     512 B: LBAs past 2^32, needs 16-byte CDBs
declare -a LUN_SIZE=() LUN_BS=() LUN_FILE=() LUN_RO=()
tgt_standard()
{
	local n
	LUN_SIZE=([1]=67108864 [2]=67108864 [3]=16777216 [4]=$((10485760 + 3 * 512))
		[5]=$((10485760 + 3 * 4096)) [6]=3298534883328)
	LUN_BS=([1]=512 [2]=4096 [3]=512 [4]=512 [5]=4096 [6]=512)
	LUN_RO=([1]=0 [2]=0 [3]=1 [4]=0 [5]=0 [6]=0)
	tgt_target 1 "$1"
	for n in 1 2 3 4 5 6; do
		LUN_FILE[n]=$T/lun$n.img
		tgt_sparse "${LUN_FILE[n]}" "${LUN_SIZE[n]}"
		tgt_lun 1 "$n" "${LUN_FILE[n]}" "${LUN_BS[n]}"
		((LUN_RO[n] == 0)) || tgt_readonly 1 "$n" 1
	done
}

# fill_random FILE [LEN [OFFSET]]: overwrite FILE (whole, or LEN bytes at OFFSET) with
# pseudo-random bytes, so that data that was never written cannot pass for zeros.
fill_random()
{
	local len=${2:-$(stat -c %s "$1")} off=${3:-0}
	python3 - "$1" "$len" "$off" <<'EOF'
import os, random, sys
path, length, off = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(length ^ off)
fd = os.open(path, os.O_WRONLY)
while length > 0:
    n = min(length, 1 << 20)
    os.pwrite(fd, rnd.randbytes(n), off)
    off += n
    length -= n
os.close(fd)
EOF
}

log "T=$T ISCSIFS=$ISCSIFS"
