#!/bin/bash
# Proves port 860 is used only when written: a target on 127.0.0.1:860 mounts (and does
# I/O) when the URL says :860, with one notice naming port 860 and "from the URL"; a
# port from a SendTargets answer is used as given (discovery through a forwarder on
# another port, sessions straight to 860), noticed once per target "from SendTargets";
# and a URL without a port goes to 3260, never to 860.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_security.sh"
requires_root
requires tgtd tgtadm ss python3

IQN=iqn.2026-11.org.iscsifs.test:port860
LT=5

# A private tgtd like tgt_start's, but on the fixed port 860.
# (a listener only: TIME-WAIT leftovers of an earlier run do not stop tgtd's bind, and if
# anything else does, _tgt_launch says so and the test skips)
[[ -z $(ss -Htln '( sport = :860 )' 2>/dev/null) ]] ||
	skip "TCP port 860 is in use on this host: $(ss -Htlnp '( sport = :860 )' | head -n 1)"
mkdir -p "$T/tgt"
: >"$T/tgt/config.log"
TGT_IPC_SOCKET=$T/tgt/ipc
TGT_LOG=$T/tgt/tgtd.log
TGT_PORT=860
TGT_CPORT=$((1024 + RANDOM % 31000))
export TGT_IPC_SOCKET TGT_LOG TGT_PORT TGT_CPORT
rc=0
_tgt_launch || rc=$?
((rc != 2)) || skip "TCP port 860 was taken before tgtd could bind it"
((rc == 0)) || fail "tgtd did not start on port 860 (see $TGT_LOG)"
TGT_PORTAL=$TGT_HOST:860
export TGT_PORTAL
log "tgtd pid $TGT_PID on $TGT_PORTAL, control port $TGT_CPORT"
tgt_target 1 "$IQN"
tgt_sparse "$T/lun1.img" 16M
tgt_lun 1 1 "$T/lun1.img"
M=$T/mnt

# io_check FILE: 1 MiB written through the mount and found in the backing file.
io_check()
{
	head -c 1M /dev/urandom >"$T/data"
	run_bounded 60 dd if="$T/data" of="$1" bs=1M seek=1 count=1 conv=notrunc,fsync \
		status=none || fail "write to $1 failed"
	check_cmp "$T/lun1.img" "$T/data" 1048576 1048576 0
}

# 1. the URL says :860
iscsifs_mount "iscsi://127.0.0.1:860/$IQN" "$M" -o "login_timeout=$LT"
io_check "$M/lun1"
check_eq "notices about port 860 (from the URL)" \
	"$(grep -c 'port 860 instead of 3260 (from the URL)' "$DAEMON_LOG")" 1
grep -qF "iscsifs: connected to 127.0.0.1:860: port 860 instead of 3260 (from the URL)" \
	"$DAEMON_LOG" || fail "the port 860 notice is not as expected: $(cat "$DAEMON_LOG")"
iscsifs_umount_ok "$M"
pass "iscsi://127.0.0.1:860/...: mounted, I/O works, one notice naming port 860 and the URL"

# 2. the port comes from SendTargets: discovery through a one-connection forwarder on
#    port F; tgtd answers TargetAddress=127.0.0.1:860 (its own address), and the
#    sessions must go there (the forwarder accepts no second connection).
tcptap F 860 --max-conns 1
iscsifs_mount "iscsi://127.0.0.1:$F" "$M" -o "login_timeout=$LT"
io_check "$M/$IQN/lun1"
check_eq "notices about port 860 (from SendTargets)" \
	"$(grep -c "target $IQN: port 860 of portal 127.0.0.1:860 instead of 3260 (from SendTargets)" \
		"$DAEMON_LOG")" 1
grep -qF "discovery at 127.0.0.1:$F: port $F instead of 3260 (from the URL)" "$DAEMON_LOG" ||
	fail "no notice about the discovery port $F: $(cat "$DAEMON_LOG")"
iscsifs_umount_ok "$M"
pass "a port from SendTargets (860) is used as given and noticed once, from SendTargets"

# ls shows the portal SendTargets gave
run_bounded 30 "$ISCSIFS" ls -o "login_timeout=$LT" "iscsi://127.0.0.1:860" >"$T/ls.out" 2>&1 ||
	fail "iscsifs ls iscsi://127.0.0.1:860: $(cat "$T/ls.out")"
grep -qF "$IQN  127.0.0.1:860" "$T/ls.out" || fail "ls lacks $IQN at 127.0.0.1:860: $(cat "$T/ls.out")"

# 3. no port written: 3260, not 860 (whatever answers on 3260, if anything, it is not
#    our target on 860)
refused "a URL without a port goes to 3260" "127.0.0.1:3260" \
	"$M" -o "login_timeout=$LT" "iscsi://127.0.0.1/$IQN" "$M"
grep -qF ":860" <<<"$EXPECT_STDERR" && REFUSED_FAILS+=("the error names port 860: $EXPECT_STDERR")
refused_report
pass "iscsi://127.0.0.1/... goes to 3260"
