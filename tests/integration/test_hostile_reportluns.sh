#!/bin/bash
# Proves the LUN list is what REPORT LUNS means, whole and once (issue 9 §11): every
# entry reported three times still gives one file (and one `iscsifs ls` row) per LUN,
# a target with 1100 LUNs — more than the first REPORT LUNS allocation holds — is
# listed and mounted whole (REPORT LUNS re-issued with the length the target gave),
# and a LUN libiscsi cannot address is listed without stopping the others.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_badtarget.sh"
requires python3

M=$T/mnt

# lun_rows: the LUN numbers of `iscsifs ls` rows (one per line) for the target URL.
lun_rows()
{
	local rc=0
	timeout -k 5 120 "$ISCSIFS" ls -o "$HOSTILE_OPTS" "$(badtarget_url)" >"$T/ls.out" 2>"$T/ls.err" || rc=$?
	((rc == 0)) || fail "iscsifs ls $(badtarget_url) exited $rc: $(head -n 3 "$T/ls.err")"
	awk '$1 ~ /^[0-9]+$/ && $2 == "disk" { print $1 }' "$T/ls.out"
}

# dup_case: REPORT LUNS lists LUNs 1 and 2 three times each.
dup_case()
{
	local rows files errs=()
	badtarget_start --lun 1=mem:4M --lun 2=mem:8M --misbehave reportluns-dup:3
	rows=$(lun_rows | tr '\n' ' ')
	[[ $rows == "1 2 " ]] || errs+=("iscsifs ls lists LUN rows '$rows', want '1 2 '")
	hostile_mount
	files=$(find "$M" -maxdepth 1 -name 'lun*' -printf '%f\n' | sort | tr '\n' ' ')
	[[ $files == "lun1 lun2 " ]] || errs+=("the mount has files '$files', want 'lun1 lun2 '")
	check_eq "size of lun2" "$(stat -c %s "$M/lun2")" $((8 << 20))
	hostile_umount
	((${#errs[@]} == 0)) || fail "REPORT LUNS lists each of LUNs 1 and 2 three times:" \
		"$(printf '%s; ' "${errs[@]}")"
	badtarget_stop
	pass "duplicate REPORT LUNS entries: one row and one file per LUN"
}

# many_case: 1100 LUNs (1..1100; 256 and up in flat space addressing).
many_case()
{
	local n nfiles want=1100
	badtarget_start --luns-count "$want" --luns-size 64K
	n=$(lun_rows | sort -un | wc -l)
	((n == want)) || fail "iscsifs ls lists $n LUNs of the $want the target reports (last listed:" \
		"$(lun_rows | tail -n 1)); a list longer than the first REPORT LUNS allocation must be read again whole"
	log "ok: iscsifs ls lists all $want LUNs"
	TRY_MOUNT_TIMEOUT=120 iscsifs_try_mount "$(badtarget_url)" "$M" -o "$HOSTILE_OPTS" ||
		fail "the mount of a target with $want LUNs failed (status $?): $(tail -n 2 "$DAEMON_LOG")"
	nfiles=$(find "$M" -maxdepth 1 -name 'lun*' | wc -l)
	((nfiles == want)) || fail "the mount has $nfiles LUN files of the $want the target reports"
	[[ -f $M/lun1100 && -f $M/lun256 ]] || fail "lun256 or lun1100 missing from the mount"
	check_hwm 400
	hostile_umount
	badtarget_stop
	pass "$want LUNs: all listed and mounted"
}

# unaddressable_case: besides LUN 1, the target reports a LUN in extended addressing
# (0xd200000000000100), which libiscsi 1.19 cannot address (it sends only bytes 0..1
# of the LUN field): it is listed, never probed through a wrong address, and it does
# not stop `iscsifs ls` or the mount of LUN 1.
unaddressable_case()
{
	local rc=0 start=$SECONDS
	badtarget_start --lun 1=mem:4M --lun 0xd200000000000100=mem:2M
	timeout -k 5 60 "$ISCSIFS" ls -o "$HOSTILE_OPTS" "$(badtarget_url)" >"$T/ls.out" 2>"$T/ls.err" || rc=$?
	((rc != 124 && rc != 137)) || fail "iscsifs ls did not finish within 60 s"
	((SECONDS - start <= 20)) || fail "iscsifs ls took $((SECONDS - start)) s (an unaddressable LUN must not cost reconnects):" \
		"$(grep -v '^+' "$T/ls.err" | tail -n 2 | tr '\n' ' ')"
	awk '$1 == "1" && $2 == "disk" { f = 1 } END { exit !f }' "$T/ls.out" ||
		fail "iscsifs ls (exit $rc) does not list LUN 1 as a disk next to an unaddressable LUN:" \
			"$(cat "$T/ls.out" "$T/ls.err" | tr '\n' ' ')"
	grep -qi 'd200000000000100' "$T/ls.out" "$T/ls.err" ||
		fail "iscsifs ls does not mention the unaddressable LUN 0xd200000000000100"
	log "ok: iscsifs ls (exit $rc): $(grep -i d2000 "$T/ls.out" "$T/ls.err" | head -n 1)"
	hostile_mount
	[[ -f $M/lun1 ]] || fail "lun1 missing from the mount: $(ls "$M")"
	check_eq "LUN files" "$(find "$M" -maxdepth 1 -name 'lun*' -printf '%f ')" "lun1 "
	hostile_umount
	badtarget_stop
	pass "an unaddressable LUN is listed, and LUN 1 works"
}

hostile_dispatch "$@"
hostile_case dup_case
hostile_case many_case
hostile_case unaddressable_case
hostile_summary
