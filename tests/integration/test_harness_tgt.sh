#!/bin/bash
# Proves the harness itself (no iscsifs): lib.sh's private tgtd serves the LUNs it was
# told to, with the sizes, block sizes and device types the other tests rely on, and
# survives tgt_restart / tgt_kill9 with its configuration replayed.
source "$(dirname "$0")/lib.sh"
requires iscsi-ls iscsi-inq iscsi-readcapacity16

IQN=iqn.2026-11.org.iscsifs.test:harness
tgt_start
tgt_target 1 "$IQN"
tgt_sparse "$T/l1" 64M
tgt_sparse "$T/l2" 64M
tgt_sparse "$T/l3" 3T
tgt_lun 1 1 "$T/l1"
tgt_lun 1 2 "$T/l2" 4096
tgt_lun 1 3 "$T/l3"
tgt_readonly 1 3 1

# readcap URL: "size blocksize" from READ CAPACITY(16).
readcap()
{
	local out
	out=$(run_bounded 20 iscsi-readcapacity16 "$1") || fail "iscsi-readcapacity16 $1: $out"
	awk -F: '/^Total size/ { s = $2 } /LOGICAL BLOCK LENGTH/ { b = $2 }
		END { gsub(/ /, "", s); gsub(/ /, "", b); print s, b }' <<<"$out"
}

check_luns()
{
	local ls type
	ls=$(run_bounded 20 iscsi-ls -s "iscsi://$TGT_PORTAL") || fail "iscsi-ls failed: $ls"
	grep -qF "Target:$IQN Portal:$TGT_PORTAL" <<<"$ls" || fail "iscsi-ls lacks $IQN: $ls"
	grep -q '^Lun:0 *Type:STORAGE_ARRAY_CONTROLLER' <<<"$ls" ||
		fail "LUN 0 is not a controller: $ls"
	check_eq "LUN 1 capacity/blocksize" "$(readcap "$(tgt_url "$IQN" 1)")" "67108864 512"
	check_eq "LUN 2 capacity/blocksize" "$(readcap "$(tgt_url "$IQN" 2)")" "67108864 4096"
	check_eq "LUN 3 capacity/blocksize" "$(readcap "$(tgt_url "$IQN" 3)")" "3298534883328 512"
	type=$(run_bounded 20 iscsi-inq "$(tgt_url "$IQN" 0)" | sed -n 's/^Peripheral Device Type://p')
	check_eq "LUN 0 device type" "$type" STORAGE_ARRAY_CONTROLLER
	tgt_adm --op show --mode target | grep -A 12 'LUN: 3' | grep -q 'Readonly: Yes' ||
		fail "LUN 3 is not read-only: $(tgt_adm --op show --mode target)"
}

check_luns
pass "tgtd on $TGT_PORTAL serves the configured LUNs"

# A second private tgtd must not disturb the first (own socket, own port).
first_port=$TGT_PORT first_cport=$TGT_CPORT first_pid=$TGT_PID
(
	T=$T/second
	mkdir -p "$T"
	TGT_PID=
	tgt_start
	tgt_target 1 iqn.2026-11.org.iscsifs.test:second
	[[ $TGT_PORT != "$first_port" ]] || fail "second tgtd got the same port"
	tgt_stop
	pid_alive "$first_pid" || fail "stopping the second tgtd killed the first"
) || fail "second tgtd"
TGT_PORT=$first_port TGT_CPORT=$first_cport TGT_PID=$first_pid
check_luns
pass "two private tgtd instances coexist"

echo data >"$T/marker"
dd if="$T/marker" of="$T/l1" bs=512 seek=7 conv=notrunc status=none
tgt_restart
check_luns
pass "tgt_restart replays the configuration"

tgt_kill9
if run_bounded 10 iscsi-ls "iscsi://$TGT_PORTAL" >/dev/null 2>&1; then
	fail "iscsi-ls succeeded after tgt_kill9"
fi
tgt_restart
check_luns
pass "tgt_kill9 then tgt_restart"

netstub refuse RPORT
netstub blackhole BPORT
expect_fail_msg "" iscsi-ls "iscsi://127.0.0.1:$RPORT"
start=$SECONDS
if timeout 3 iscsi-ls "iscsi://127.0.0.1:$BPORT" >/dev/null 2>&1; then
	fail "iscsi-ls against the blackhole succeeded"
fi
((SECONDS - start >= 2)) || fail "the blackhole answered (iscsi-ls gave up after $((SECONDS - start)) s)"
pass "refuse and blackhole stubs"
