#!/bin/bash
# Proves absurd capacities are refused with a message, never mounted wrapped (issue 9
# §10): READ CAPACITY(16) giving last LBA 2^64-1 (a 0-byte file today), 2^55 with
# 512-byte blocks (2^64 + 512 bytes: wraps to 512), or 2^63 bytes (more than a file
# can be), and RC16 refused with RC10 answering 0xFFFFFFFF ("use RC16": no size at
# all) make the mount fail naming the capacity; while RC16 refused with a real RC10
# answer, and a legal 2 PiB LUN, mount with their exact size.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_badtarget.sh"
requires python3

M=$T/mnt
IMG=$T/lun1.img

new_lun()
{
	rm -f "$IMG"
	truncate -s 16M "$IMG"
	fill_random "$IMG"
}

# Expected once fixed, e.g.
#   "iscsifs: TARGET LUN 1 reports a capacity of 18446744073709551616 blocks of 512
#    bytes, more than a file can hold (2^63 - 1 bytes): not mounting it"
# The check: the daemon exits non-zero and its log mentions the capacity or size.
SIZE_RE='capacity|size|blocks'

# refuse_case WHAT MISBEHAVIOUR...: the mount of LUN 1 must fail with a message.
refuse_case()
{
	local what=$1 rc=0
	shift
	local -a mis=()
	for m in "$@"; do
		mis+=(--misbehave "$m")
	done
	new_lun
	badtarget_start --lun "1=$IMG" "${mis[@]}"
	iscsifs_try_mount "$(badtarget_url 1)" "$M" -o "$HOSTILE_OPTS" || rc=$?
	case $rc in
	0) fail "mounted LUN 1 although $what: stat of lun1 says: $(stat -c "%s bytes" "$M/lun1" 2>&1 || true)" ;;
	124) fail "$what: neither mounted nor failed within 60 s" ;;
	esac
	((TRY_RC != 0)) || fail "$what: the daemon exited 0 without mounting"
	check_log_says "why the LUN's size was refused ($what)" "$SIZE_RE"
	badtarget_stop
	pass "$what: refused (exit $TRY_RC): $(grep -v '^+' "$DAEMON_LOG" | grep -Ei "$SIZE_RE" | head -n 1)"
}

# size_case WHAT SIZE LUN-OPTIONS TARGET-ARGS...: the mount works and lun1 has SIZE
# bytes (LUN-OPTIONS are appended to --lun 1=IMG, e.g. ",size=2P").
size_case()
{
	local what=$1 size=$2 lunopts=$3
	shift 3
	new_lun
	badtarget_start --lun "1=$IMG$lunopts" "$@"
	hostile_mount 1
	check_eq "size of lun1 ($what)" "$(stat -c %s "$M/lun1")" "$size"
	expect_read_ok "($what)" "$M/lun1" 0 65536 "$IMG"
	hostile_umount
	badtarget_stop
	pass "$what: mounted, $size bytes"
}

hostile_dispatch "$@"
hostile_case refuse_case "READ CAPACITY(16) says last LBA 2^64-1" capacity16:2^64-1
hostile_case refuse_case "READ CAPACITY(16) says last LBA 2^55 (512-byte blocks: 2^64 + 512 bytes)" capacity16:2^55:512
hostile_case refuse_case "READ CAPACITY(16) says 2^54 blocks of 512 bytes (2^63 bytes)" capacity16:2^54-1:512
hostile_case refuse_case "READ CAPACITY(16) is refused and READ CAPACITY(10) says 0xFFFFFFFF" no-rc16 capacity10:0xffffffff
hostile_case size_case "READ CAPACITY(16) refused, READ CAPACITY(10) right" $((16 << 20)) "" --misbehave no-rc16
hostile_case size_case "a 2 PiB LUN (legal)" $((1 << 51)) ",size=2P"
hostile_summary
