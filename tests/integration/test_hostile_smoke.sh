#!/bin/bash
# Proves the misbehaving test target is a correct target when it behaves: iscsifs
# mounts it, fio --verify=crc32c passes (psync, and libaio O_DIRECT), data written
# through the mount is in the backing files after unmount (cmp), punch/zero/SEEK_HOLE
# work on a thin LUN, `iscsifs ls` of the portal lists its LUNs; and again with small
# Data-In PDUs, a separate status, R2T only (no immediate or unsolicited data), a
# command window of 4, target NOP-In pings and header digests.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_badtarget.sh"
requires fio python3

M=$T/mnt

# run_fio NAME ARGS...: one fio job (bounded); fails the test with fio's output.
run_fio()
{
	local name=$1 out=$T/fio.$1.out rc=0
	shift
	(cd "$T" && run_bounded 240 fio --name="$name" --output="$out" --verify_fatal=1 \
		--randrepeat=1 --randseed=4242 "$@" >/dev/null 2>"$out.err") || rc=$?
	if ((rc != 0)) || grep -qE 'verify: bad|crc32c: verify failed|err=[ ]*[1-9]' "$out"; then
		echo "--- fio $name $* (exit $rc) ---" >&2
		tail -n 40 "$out" "$out.err" >&2
		fail "fio $name failed"
	fi
	log "fio $name: $(grep -oE '(READ|WRITE): bw=[^,]*' "$out" | tr '\n' ' ')"
}

# round LABEL TARGET-ARGS...: one target configuration, the whole check.
round()
{
	local label=$1 n out
	shift
	for n in 1 2; do
		rm -f "$T/lun$n.img"
	done
	truncate -s 32M "$T/lun1.img"
	truncate -s 32M "$T/lun2.img"
	fill_random "$T/lun1.img"
	badtarget_start --lun "1=$T/lun1.img" --lun "2=$T/lun2.img,bs=4096,thin" \
		--lun 3=mem:4M,ro "$@"

	# iscsifs ls of the portal: the target and its three disks.
	local out rc=0
	out=$(timeout -k 5 60 "$ISCSIFS" ls "iscsi://$BT_PORTAL" 2>"$T/ls.err") || rc=$?
	((rc == 0)) || fail "$label: iscsifs ls iscsi://$BT_PORTAL exited $rc: $(cat "$T/ls.err")"
	grep -qF "$BT_IQN" <<<"$out" || fail "$label: iscsifs ls does not name $BT_IQN:
$out"
	for n in 1 2 3; do
		grep -Eq "(^|[^0-9])${n}[[:space:]].*disk" <<<"$out" ||
			fail "$label: iscsifs ls does not list LUN $n as a disk:
$out"
	done
	log "$label: iscsifs ls lists the target and LUNs 1-3"

	iscsifs_mount "$(badtarget_url)" "$M" -o cache_size=16M
	[[ -f $M/lun1 && -f $M/lun2 && -f $M/lun3 ]] || fail "$label: LUN files missing: $(ls "$M")"
	check_eq "$label: size of lun1" "$(stat -c %s "$M/lun1")" $((32 << 20))
	check_eq "$label: mode of the read-only lun3" "$(stat -c %a "$M/lun3")" 400

	# Data read through the mount is the backing file's.
	check_cmp "$M/lun1" "$T/lun1.img" $((4 << 20)) $((8 << 20))

	run_fio "$label-psync" --filename="$M/lun1" --rw=randrw --bs=4k --size=8M \
		--offset=16M --ioengine=psync --verify=crc32c --do_verify=1
	if python3 -c 'import os, sys; os.close(os.open(sys.argv[1], os.O_RDWR | os.O_DIRECT))' \
		"$M/lun2" 2>/dev/null; then
		run_fio "$label-libaio" --filename="$M/lun2" --rw=randrw --bsrange=4k-256k --size=8M \
			--ioengine=libaio --iodepth=8 --direct=1 --verify=crc32c --do_verify=1
	else
		run_fio "$label-2jobs" --filename="$M/lun2" --rw=randrw --bsrange=4k-256k --size=4M \
			--numjobs=2 --offset_increment=4M --ioengine=psync --verify=crc32c --do_verify=1
	fi

	# Thin provisioning on lun2: UNMAP (punch), WRITE SAME (zero range), GET LBA STATUS
	# (SEEK_HOLE/SEEK_DATA) over a region written whole first.
	bt_pattern_file "$T/p2" $((8 << 20)) 8
	dd if="$T/p2" of="$M/lun2" bs=1M seek=16 conv=notrunc,fsync status=none ||
		fail "$label: dd to lun2 failed"
	fallocate -p -o 18M -l 1M "$M/lun2" || fail "$label: fallocate -p on thin lun2 failed"
	fallocate -z -o 20M -l 1M "$M/lun2" || fail "$label: fallocate -z on thin lun2 failed"
	out=$(python3 -c '
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
z = os.pread(fd, 1 << 20, 18 << 20) == bytes(1 << 20) and os.pread(fd, 1 << 20, 20 << 20) == bytes(1 << 20)
print(os.lseek(fd, 16 << 20, os.SEEK_HOLE) >> 20, os.lseek(fd, 18 << 20, os.SEEK_DATA) >> 20, z)
' "$M/lun2")
	check_eq "$label: SEEK_HOLE from 16M, SEEK_DATA from 18M (MiB), punched/zeroed ranges read zeros" \
		"$out" "18 19 True"

	# A write with dd, an fsync, an unmount: the backing file holds it.
	bt_pattern_file "$T/pattern" $((3 << 20)) 7
	dd if="$T/pattern" of="$M/lun1" bs=1M seek=1 conv=notrunc,fsync status=none ||
		fail "$label: dd to lun1 failed"
	iscsifs_umount_ok "$M"
	check_cmp "$T/lun1.img" "$T/pattern" $((3 << 20)) $((1 << 20)) 0
	check_cmp "$T/lun2.img" "$T/p2" $((2 << 20)) $((16 << 20)) 0
	check_cmp "$T/lun2.img" /dev/zero $((1 << 20)) $((18 << 20)) 0
	check_cmp "$T/lun2.img" "$T/p2" $((1 << 20)) $((19 << 20)) $((3 << 20))
	check_cmp "$T/lun2.img" /dev/zero $((1 << 20)) $((20 << 20)) 0
	check_cmp "$T/lun2.img" "$T/p2" $((3 << 20)) $((21 << 20)) $((5 << 20))

	local written reads
	written=$(badtarget_counter bytes_written.1)
	reads=$(badtarget_counter commands_by_name.READ\(10\))
	((written >= (3 << 20))) || fail "$label: the target counted $written bytes written to LUN 1"
	((reads > 0)) || fail "$label: the target counted no READ(10)"
	log "$label: target counters: $written bytes written to LUN 1, $reads READ(10)"
	badtarget_stop
	pass "$label: ls, mount, fio verify, dd + cmp after unmount"
}

round default
round strict --datain-max 8192 --separate-status --initial-r2t --no-immediate-data \
	--header-digest crc32c --max-burst 65536 --cmd-window 4 --nop-interval 1
