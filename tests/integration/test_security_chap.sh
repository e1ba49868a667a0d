#!/bin/bash
# Proves one-way and mutual CHAP log in, mount and do I/O (from a secret file and from
# the LIBISCSI_CHAP_* variables, in the foreground and daemonized), re-login after a
# target restart uses the same credentials, discovery (a portal-only URL and `iscsifs
# ls`) uses them too, and while mounted no secret shows in `ps`, /proc/PID/cmdline,
# /proc/PID/environ, the daemon's -d output (libiscsi's own debug log included),
# stats, metrics, /proc/mounts or `iscsifs ls` output; and mutual-CHAP credentials
# also work with a portal whose discovery needs no CHAP.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_security.sh"
requires python3

IQN=iqn.2026-11.org.iscsifs.test:chap
PW_IN=InSecret-5Wr8kT       # alice's password (initiator side)
PW_OUT=OutSecret-2Hn6dQ     # tgtout's password (the target's own, mutual CHAP)
LT=5
tgt_start
tgt_target 1 "$IQN"
tgt_sparse "$T/lun1.img" 16M
tgt_lun 1 1 "$T/lun1.img"
tgt_account alice "$PW_IN"
tgt_account tgtout "$PW_OUT"
tgt_require_chap 1 alice
tgt_require_chap 1 tgtout --outgoing
tgt_require_chap discovery alice
tgt_require_chap discovery tgtout --outgoing
URL=$(tgt_url "$IQN")
P=$TGT_PORTAL
ONEWAY=$(secret_file oneway.secret 600 "# one-way CHAP" "username = alice" "password = $PW_IN")
MUTUAL=$(secret_file mutual.secret 600 "username = alice" "password = $PW_IN" \
	"target_username = tgtout" "target_password = $PW_OUT")
CHAP_ENV=(LIBISCSI_CHAP_USERNAME=alice "LIBISCSI_CHAP_PASSWORD=$PW_IN"
	LIBISCSI_CHAP_TARGET_USERNAME=tgtout "LIBISCSI_CHAP_TARGET_PASSWORD=$PW_OUT")

# io_check FILE OFFSET_MIB WHAT: write 1 MiB of fresh random data at OFFSET_MIB MiB of
# FILE (a LUN file on a mount of LUN 1), flush, and compare it through the mount and in
# the backing file.
io_check()
{
	local f=$1 off=$2 what=$3
	head -c 1M /dev/urandom >"$T/data"
	run_bounded 60 dd if="$T/data" of="$f" bs=1M seek="$off" count=1 conv=notrunc,fsync \
		status=none || fail "$what: write to $f failed"
	check_cmp "$f" "$T/data" 1048576 $((off << 20)) 0
	check_cmp "$T/lun1.img" "$T/data" 1048576 $((off << 20)) 0
	log "$what: 1 MiB at $off MiB written and read back"
}

# check_no_leak PID MNT LOG WHAT: no secret in ps, the daemon's cmdline and environ,
# its log, stats, metrics, /proc/mounts or `iscsifs stat`.
check_no_leak()
{
	local pid=$1 mnt=$2 dlog=$3 what=$4
	ps -eo args >"$T/ps.txt"
	tr '\0' ' ' <"/proc/$pid/cmdline" >"$T/cmdline.txt"
	cp "/proc/$pid/environ" "$T/environ.bin"
	cat "$mnt/.iscsifs/stats.json" "$mnt/.iscsifs/metrics" >"$T/stats.txt"
	run_bounded 10 "$ISCSIFS" stat "$mnt" >>"$T/stats.txt" 2>&1
	cp /proc/mounts "$T/mounts.txt"
	[[ -s $T/ps.txt && -s $T/stats.txt ]] || fail "$what: nothing collected"
	no_secret_in "$what: ps -eo args" "$T/ps.txt"
	no_secret_in "$what: /proc/$pid/cmdline" "$T/cmdline.txt"
	no_secret_in "$what: /proc/$pid/environ" "$T/environ.bin"
	no_secret_in "$what: stats.json, metrics, iscsifs stat" "$T/stats.txt"
	no_secret_in "$what: /proc/mounts" "$T/mounts.txt"
	[[ -z $dlog ]] || no_secret_in "$what: daemon output" "$dlog"
	pass "$what: no secret in ps, cmdline, environ, stats, /proc/mounts${dlog:+, -d output}"
}

M=$T/mnt

# 1. one-way CHAP from a secret file, -f -d
ISCSIFS_DEBUG=1 iscsifs_mount "$URL" "$M" -o "login_timeout=$LT,secret_file=$ONEWAY"
grep -q "logged in" "$DAEMON_LOG" || fail "-d output has no debug lines: is -d on?"
check_eq "initiators on the target" "$(tgt_initiators 1 | wc -l)" 1
io_check "$M/lun1" 1 "one-way CHAP"
check_no_leak "$ISCSIFS_PID" "$M" "$DAEMON_LOG" "one-way CHAP (secret file, -f -d)"
iscsifs_umount_ok "$M"
no_secret_in "one-way CHAP: daemon output after unmount" "$DAEMON_LOG"

# 2. mutual CHAP from the environment, -f -d, with libiscsi's own debug log on; the
#    target restarts while mounted: the re-login needs the secrets again.
export "${CHAP_ENV[@]}" LIBISCSI_DEBUG=10
ISCSIFS_DEBUG=1 iscsifs_mount "$URL" "$M" -o "login_timeout=$LT"
unset LIBISCSI_CHAP_USERNAME LIBISCSI_CHAP_PASSWORD LIBISCSI_CHAP_TARGET_USERNAME \
	LIBISCSI_CHAP_TARGET_PASSWORD LIBISCSI_DEBUG
grep -qa "LIBISCSI_CHAP_PASSWORD=" "/proc/$ISCSIFS_PID/environ" ||
	fail "the environment variant did not reach the daemon (no LIBISCSI_CHAP_PASSWORD)"
grep -q "^libiscsi:.*TargetLoginReply: CHAP_N=tgtout" "$DAEMON_LOG" ||
	fail "libiscsi's debug log (LIBISCSI_DEBUG=10) is not in the daemon output"
io_check "$M/lun1" 2 "mutual CHAP (environment)"
check_no_leak "$ISCSIFS_PID" "$M" "$DAEMON_LOG" "mutual CHAP (environment, -f -d)"
tgt_restart
wait_for 30 eval '[[ -n $(tgt_initiators 1) ]]' ||
	fail "no re-login within 30 s after the target restarted"
io_check "$M/lun1" 3 "mutual CHAP after a target restart (re-login)"
check_no_leak "$ISCSIFS_PID" "$M" "$DAEMON_LOG" "mutual CHAP after re-login"
iscsifs_umount_ok "$M"
no_secret_in "mutual CHAP: daemon output after unmount" "$DAEMON_LOG"

# 3. daemonized, mutual CHAP from the environment, a portal-only URL: discovery needs
#    CHAP too (bound to discovery sessions above). The daemon is the forked child.
M3=$T/mnt3
mkdir -p "$M3"
rc=0
env "${CHAP_ENV[@]}" timeout -k 2 60 "$ISCSIFS" -o "login_timeout=$LT" "iscsi://$P" "$M3" \
	</dev/null >"$T/daemon.out" 2>&1 || rc=$?
((rc == 0)) || fail "daemonized mount of iscsi://$P: exit $rc: $(cat "$T/daemon.out")"
DPID=$(pgrep -f -- "$ISCSIFS.* $M3\$" | head -n 1)
[[ -n $DPID ]] || fail "no daemon serving $M3"
track_mount "$M3" "$DPID"
is_fuse_mounted "$M3" || fail "$M3 is not mounted after the daemon said so"
io_check "$M3/$IQN/lun1" 4 "mutual CHAP, daemonized, discovery with CHAP"
no_secret_in "daemonized: its output" "$T/daemon.out"
check_no_leak "$DPID" "$M3" "" "mutual CHAP (environment, daemonized)"
fusermount3 -u "$M3"
wait_for 30 eval '! pid_alive $DPID' || fail "daemon $DPID did not exit after unmount"

# 4. iscsifs ls with the credentials: discovery and the LUN listing work, no secret
#    printed (also with -d)
for d in "" -d; do
	rc=0
	run_bounded 30 "$ISCSIFS" ls $d -o "login_timeout=$LT,secret_file=$MUTUAL" "iscsi://$P" \
		>"$T/ls.out" 2>"$T/ls.err" || rc=$?
	((rc == 0)) || fail "iscsifs ls $d with credentials: exit $rc: $(cat "$T/ls.out" "$T/ls.err")"
	grep -qF "$IQN  $P" "$T/ls.out" || fail "iscsifs ls $d: $IQN missing: $(cat "$T/ls.out")"
	grep -qE '^  1 +disk ' "$T/ls.out" || fail "iscsifs ls $d: LUN 1 missing: $(cat "$T/ls.out")"
	no_secret_in "iscsifs ls $d" "$T/ls.out" "$T/ls.err"
done
pass "iscsifs ls with mutual CHAP (discovery and target) lists the LUNs, prints no secret"

# 5. a portal that runs discovery without CHAP (tgt's and LIO's default): mutual CHAP
#    credentials still discover (discovery does not ask the portal to prove itself),
#    and the target login stays mutual.
tgt_adm --op unbind --mode account --user alice >/dev/null
tgt_adm --op unbind --mode account --user tgtout --outgoing >/dev/null
run_bounded 30 "$ISCSIFS" ls -o "login_timeout=$LT,secret_file=$MUTUAL" "iscsi://$P" \
	>"$T/ls.out" 2>&1 || fail "iscsifs ls, discovery without CHAP: $(cat "$T/ls.out")"
grep -qF "$IQN  $P" "$T/ls.out" || fail "iscsifs ls, discovery without CHAP: $(cat "$T/ls.out")"
iscsifs_mount "iscsi://$P" "$M" -o "login_timeout=$LT,secret_file=$MUTUAL"
io_check "$M/$IQN/lun1" 5 "mutual CHAP, discovery without CHAP"
iscsifs_umount_ok "$M"
pass "mutual CHAP credentials work with a portal whose discovery needs no CHAP"
