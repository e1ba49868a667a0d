#!/bin/bash
# Proves a target that stops answering never holds a user beyond the documented budget
# (issue 9 §8, §12): with READs unanswered (NOPs still answered) or nothing answered
# after login, reads and writes fail with EIO within replacement_timeout +
# cmd_timeout (+ slack), a reader killed with SIGKILL goes at once (FUSE INTERRUPT),
# the daemon exits promptly after fusermount3 -u, I/O works again once the target
# answers, and a mount, `iscsifs ls` or a login against a silent target fails in
# bounded time with a message that says the target does not answer.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_badtarget.sh"
requires python3

M=$T/mnt
IMG=$T/lun1.img

new_lun()
{
	rm -f "$IMG"
	truncate -s 64M "$IMG"
	fill_random "$IMG"
}

# Expected log/stderr once fixed, e.g.
#   "... LUN 1: READ(10) at LBA 40960: no answer within cmd_timeout (5 s); dropping the connection"
#   "iscsifs: TARGET at PORTAL: logged in, but the target does not answer (REPORT LUNS: no answer within 5 s)"
# The check is loose: one of these phrases.
SILENT_RE='no answer|not answer|did not answer|unanswered|not respond|unresponsive|timed out|timeout'

# kill_blocked_reader OFF: an O_DIRECT (else buffered) reader blocked on an unanswered
# READ dies within 5 s of SIGKILL.
kill_blocked_reader()
{
	local off=$1 pid flags=os.O_RDONLY
	if python3 -c 'import os, sys; os.close(os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECT))' \
		"$M/lun1" 2>/dev/null; then
		flags='os.O_RDONLY | os.O_DIRECT'
	fi
	python3 -c "
import mmap, os, sys
fd = os.open(sys.argv[1], $flags)
buf = mmap.mmap(-1, 65536)
os.preadv(fd, [buf], int(sys.argv[2]))
" "$M/lun1" "$off" >/dev/null 2>&1 &
	pid=$!
	sleep 2
	pid_alive "$pid" || { wait "$pid" || true; log "the reader finished within 2 s (no wait to interrupt)"; return 0; }
	kill -KILL "$pid"
	if ! wait_for 5 _bt_gone "$pid"; then
		track_pid "$pid"
		fail "a reader blocked on an unanswered READ (flags $flags) was still there 5 s" \
			"after SIGKILL (state $(awk '{ print $3 }' "/proc/$pid/stat" 2>/dev/null)):" \
			"the daemon does not answer FUSE INTERRUPT"
	fi
	wait "$pid" 2>/dev/null || true
	log "ok: a reader blocked on an unanswered READ ($flags) died within 5 s of SIGKILL"
}

# noanswer_case: READs are never answered, NOP-Outs are.
noanswer_case()
{
	local nops
	new_lun
	badtarget_start --lun "1=$IMG" --misbehave noanswer --start-off
	hostile_mount 1
	badtarget_misbehave on
	expect_io_eio "does not answer READs (but answers NOPs)" read "$M/lun1" $((20 << 20)) 65536
	# Buffered 8 MiB: the kernel may split it into several requests; all of them
	# share the budget, so allow it twice.
	HOSTILE_BOUND=$((HOSTILE_BOUND * 2)) expect_io_eio "does not answer READs (8 MiB buffered)" \
		read "$M/lun1" $((30 << 20)) $((8 << 20))
	kill_blocked_reader $((50 << 20))
	nops=$(badtarget_counter nop_out_received)
	log "the target answered $nops NOP-Outs meanwhile"
	badtarget_misbehave off
	expect_read_ok "after the target answers again" "$M/lun1" $((20 << 20)) 65536 "$IMG"
	badtarget_misbehave on
	hostile_umount
	check_log_says "that the target did not answer the READ" "$SILENT_RE"
	badtarget_stop
	pass "READs unanswered: EIO within the budget, SIGKILL works, exit after unmount"
}

# silent_case: after login nothing is answered at all.
silent_case()
{
	new_lun
	badtarget_start --lun "1=$IMG" --misbehave silent --start-off
	hostile_mount 1
	badtarget_misbehave on
	expect_io_eio "answers nothing at all" read "$M/lun1" $((20 << 20)) 65536
	expect_io_eio "answers nothing at all" write "$M/lun1" $((10 << 20)) 65536 --pattern 4
	check_hwm 200
	hostile_umount
	badtarget_stop
	pass "nothing answered: reads and writes EIO within the budget, exit after unmount"
}

# umount_case: default timeouts (cmd_timeout 30 s, replacement_timeout 120 s), nothing
# dirty, nothing in flight; the target goes silent and the mount is unmounted: the
# daemon has nothing to wait for and must exit within 15 s (a logout that gets no
# answer is bounded too).
umount_case()
{
	local rc=0 start
	new_lun
	badtarget_start --lun "1=$IMG" --misbehave silent --start-off
	iscsifs_mount "$(badtarget_url 1)" "$M" -o cache_size=16M
	expect_read_ok "before the target goes silent" "$M/lun1" 0 65536 "$IMG"
	badtarget_misbehave on
	sleep 1
	start=$SECONDS
	UMOUNT_TIMEOUT=15 iscsifs_umount "$M" || rc=$?
	((rc != 124)) || fail "the daemon was still running 15 s after fusermount3 -u" \
		"(target silent, nothing dirty, default timeouts)"
	badtarget_stop
	pass "silent target, nothing dirty: the daemon exited $((SECONDS - start)) s after unmount (status $rc)"
}

# mount_case: the target logs in and then answers nothing: the mount fails within
# login_timeout + cmd_timeout + replacement_timeout + 10 s, saying so.
mount_case()
{
	local rc=0 bound=$((5 + HOSTILE_CMD_TIMEOUT + HOSTILE_REPLACEMENT + 10))
	new_lun
	badtarget_start --lun "1=$IMG" --misbehave silent
	TRY_MOUNT_TIMEOUT=$((bound + 60)) iscsifs_try_mount "$(badtarget_url 1)" "$M" -o "$HOSTILE_OPTS" || rc=$?
	case $rc in
	0) fail "mounted a target that answers nothing after login" ;;
	124) fail "a mount of a target that answers nothing after login was still pending after $((bound + 60)) s" ;;
	esac
	((TRY_SECS <= bound)) || fail "the mount of a target that answers nothing after login failed" \
		"only after $TRY_SECS s, want within $bound s (login_timeout 5 + cmd_timeout" \
		"$HOSTILE_CMD_TIMEOUT + replacement_timeout $HOSTILE_REPLACEMENT + 10); it said:" \
		"$(grep -v '^+' "$DAEMON_LOG" | tail -n 2 | tr '\n' ' ')"
	check_log_says "that the target does not answer" "$SILENT_RE"
	badtarget_stop
	pass "mount of a silent target: failed in $TRY_SECS s (exit $TRY_RC) with a message"
}

# ls_case URL-KIND: `iscsifs ls` of the portal (discovery answered by nobody) or of
# the target fails within the bound, saying the target does not answer.
ls_case()
{
	local kind=$1 url rc=0 start=$SECONDS secs bound=$((5 + HOSTILE_CMD_TIMEOUT + HOSTILE_REPLACEMENT + 10))
	new_lun
	badtarget_start --lun "1=$IMG" --misbehave silent
	if [[ $kind == portal ]]; then url="iscsi://$BT_PORTAL"; else url=$(badtarget_url); fi
	timeout -k 5 $((bound + 60)) "$ISCSIFS" ls -o "$HOSTILE_OPTS" "$url" >"$T/ls.out" 2>"$T/ls.err" || rc=$?
	secs=$((SECONDS - start))
	((rc != 124 && rc != 137)) || fail "iscsifs ls $url (target answers nothing) was still running after $((bound + 60)) s"
	((rc != 0)) || fail "iscsifs ls $url exited 0 although the target answers nothing: $(cat "$T/ls.out")"
	((secs <= bound)) || fail "iscsifs ls $url (target answers nothing) failed only after $secs s," \
		"want within $bound s; it said: $(tr '\n' ' ' <"$T/ls.err")"
	check_log_says "that the target does not answer" "$SILENT_RE" "$T/ls.err"
	badtarget_stop
	pass "iscsifs ls of a silent $kind: exit $rc in $secs s: $(head -n 1 "$T/ls.err")"
}

# login_case: not even the login is answered: the mount fails within login_timeout +
# 10 s with a message about the login.
login_case()
{
	local rc=0 bound=15
	new_lun
	badtarget_start --lun "1=$IMG" --misbehave silent-login
	TRY_MOUNT_TIMEOUT=$((bound + 60)) iscsifs_try_mount "$(badtarget_url 1)" "$M" -o "$HOSTILE_OPTS" || rc=$?
	((rc == 1)) || fail "a target that never answers the login: try_mount returned $rc (0 mounted, 124 pending after $((bound + 60)) s)"
	((TRY_SECS <= bound)) || fail "a target that never answers the login: the mount failed only after $TRY_SECS s, want within $bound s (login_timeout 5 + 10)"
	check_log_says "that the login got no answer" "login"
	badtarget_stop
	pass "a login that is never answered: failed in $TRY_SECS s (exit $TRY_RC)"
}

hostile_dispatch "$@"
hostile_case noanswer_case
hostile_case silent_case
hostile_case umount_case
hostile_case mount_case
hostile_case ls_case portal
hostile_case ls_case target
hostile_case login_case
hostile_summary
