#!/bin/bash
# Proves data integrity under load: fio random read/write with crc32c verification
# passes through the mount (psync; libaio+O_DIRECT at queue depth 16, or 4 parallel
# psync jobs where O_DIRECT is refused), and data written by fio verifies again from
# the target's backing file after unmount.
source "$(dirname "$0")/lib.sh"
requires fio python3

IQN=iqn.2026-11.org.iscsifs.test:fio
tgt_start
tgt_standard "$IQN"
M=$T/mnt

# run_fio NAME ARGS...: one fio job (bounded); fails the test with fio's output.
run_fio()
{
	local name=$1 out=$T/fio.$1.out rc=0
	shift
	# In $T: fio leaves its verify state files (*-verify.state) in the working directory.
	(cd "$T" && run_bounded 240 fio --name="$name" --output="$out" --verify_fatal=1 \
		--randrepeat=1 --randseed=4242 "$@" >/dev/null 2>"$out.err") || rc=$?
	if ((rc != 0)) || grep -qE 'verify: bad|crc32c: verify failed|err=[ ]*[1-9]' "$out"; then
		echo "--- fio $name $* (exit $rc) ---" >&2
		tail -n 40 "$out" "$out.err" >&2
		fail "fio $name failed"
	fi
	log "fio $name: $(grep -oE '(READ|WRITE): bw=[^,]*' "$out" | tr '\n' ' ')"
}

iscsifs_mount "$(tgt_url "$IQN")" "$M"

# 1. Random read/write, 4 KiB, synchronous I/O, verified (512 B LUN).
run_fio randrw-psync --filename="$M/lun1" --rw=randrw --bs=4k --size=64M \
	--ioengine=psync --verify=crc32c --do_verify=1
pass "fio randrw psync 4k verify=crc32c on lun1"

# 2. Queue depth: libaio with O_DIRECT when the mount accepts O_DIRECT; otherwise four
# psync jobs on disjoint 16 MiB ranges (several FUSE requests in flight).
if python3 -c 'import os, sys; os.close(os.open(sys.argv[1], os.O_RDWR | os.O_DIRECT))' \
	"$M/lun2" 2>"$T/odirect.err"; then
	run_fio randrw-libaio --filename="$M/lun2" --rw=randrw --bsrange=4k-128k --size=64M \
		--ioengine=libaio --iodepth=16 --direct=1 --verify=crc32c --do_verify=1
	pass "fio randrw libaio iodepth=16 direct=1 verify=crc32c on lun2 (4096 B blocks)"
else
	log "O_DIRECT open refused ($(cat "$T/odirect.err" | tail -n 1)): 4 psync jobs instead"
	run_fio randrw-4jobs --filename="$M/lun2" --rw=randrw --bsrange=4k-128k --size=16M \
		--numjobs=4 --offset_increment=16M --ioengine=psync --verify=crc32c --do_verify=1
	pass "fio randrw 4 psync jobs verify=crc32c on lun2 (4096 B blocks)"
fi

# 3. Random writes with odd sizes through the mount, verified again from the backing
# file once unmounted: the data is on the target, not only in our cache.
run_fio randwrite-odd --filename="$M/lun4" --rw=randwrite --bsrange=512-96k \
	--size="${LUN_SIZE[4]}" --ioengine=psync --verify=crc32c --do_verify=1 \
	--numjobs=1
iscsifs_umount_ok "$M"
run_fio randwrite-odd-backing --filename="${LUN_FILE[4]}" --rw=randwrite --bsrange=512-96k \
	--size="${LUN_SIZE[4]}" --ioengine=psync --verify=crc32c --verify_only=1 --numjobs=1
pass "fio randwrite data verifies from the backing file after unmount"
