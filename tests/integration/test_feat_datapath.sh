#!/bin/bash
# Proves the data path's promises through a real mount: fio crc32c verification at
# queue depth 32, buffered and O_DIRECT, in every cache mode (cache=writeback,
# writethrough, none), with the data on the target afterwards; a buffered write costs
# no getxattr(security.capability) round trip of its own while user.iscsi.* still
# reads; and cache_size is the budget of the whole mount: 16 LUNs read in parallel
# keep the daemon's peak RSS within cache_size + 64 MiB.
source "$(dirname "$0")/lib.sh"
requires fio python3

IQN=iqn.2026-11.org.iscsifs.test:datapath
NLUNS=16
LUNSIZE=32M
tgt_start
tgt_target 1 "$IQN"
for n in $(seq 1 $NLUNS); do
	tgt_sparse "$T/lun$n.img" $LUNSIZE
	tgt_lun 1 "$n" "$T/lun$n.img" $(((n % 2) ? 512 : 4096))
done
M=$T/mnt

# run_fio NAME ARGS...: one fio job (bounded); fails the test with fio's output.
run_fio()
{
	local name=$1 out=$T/fio.$1.out rc=0
	shift
	(cd "$T" && run_bounded 240 fio --name="$name" --output="$out" --verify_fatal=1 \
		--randrepeat=1 --randseed=7 "$@" >/dev/null 2>"$out.err") || rc=$?
	if ((rc != 0)) || grep -qE 'verify: bad|crc32c: verify failed|err=[ ]*[1-9]' "$out"; then
		echo "--- fio $name $* (exit $rc) ---" >&2
		tail -n 40 "$out" "$out.err" >&2
		fail "fio $name failed"
	fi
}

# 1. Every cache mode, queue depth 32, buffered and O_DIRECT, verified through the
# mount and again from the backing file after unmount.
for mode in writeback writethrough none; do
	iscsifs_mount "$(tgt_url "$IQN")" "$M" -o "cache=$mode,cache_size=16M"
	run_fio "$mode-direct" --filename="$M/lun1" --rw=randrw --bsrange=512-64k --size=$LUNSIZE \
		--ioengine=libaio --iodepth=32 --direct=1 --verify=crc32c --do_verify=1
	run_fio "$mode-direct4k" --filename="$M/lun2" --rw=randrw --bs=4k --size=$LUNSIZE \
		--ioengine=libaio --iodepth=32 --direct=1 --verify=crc32c --do_verify=1
	run_fio "$mode-buffered" --filename="$M/lun3" --rw=randwrite --bsrange=512-64k \
		--size=$LUNSIZE --ioengine=libaio --iodepth=32 --verify=crc32c --do_verify=1
	iscsifs_umount_ok "$M"
	run_fio "$mode-backing" --filename="$T/lun3.img" --rw=randwrite --bsrange=512-64k \
		--size=$LUNSIZE --ioengine=psync --verify=crc32c --verify_only=1
	pass "cache=$mode: fio crc32c verify at QD32, O_DIRECT (512 and 4096 B blocks) and buffered, data on the target"
done

# 2. Buffered writes: no getxattr per write (FUSE_HANDLE_KILLPRIV_V2), xattrs intact.
ISCSIFS_DEBUG=1 iscsifs_mount "$(tgt_url "$IQN")" "$M"
before=$(grep -c 'getxattr security' "$DAEMON_LOG" || true)
python3 - "$M/lun5" <<'EOF'
import os, sys
fd = os.open(sys.argv[1], os.O_WRONLY)
for i in range(2000):
    os.pwrite(fd, b"k" * 4096, (i * 7919 % 8000) * 4096)
os.close(fd)
EOF
after=$(grep -c 'getxattr security' "$DAEMON_LOG" || true)
log "getxattr(security.*) requests for 2000 buffered writes: $((after - before))"
((after - before <= 5)) || fail "2000 buffered writes cost $((after - before)) getxattr requests (want a handful)"
check_eq "user.iscsi.lun of lun5" "$(getfattr --absolute-names --only-values -n user.iscsi.lun "$M/lun5" 2>&1)" 5
iscsifs_umount_ok "$M"
pass "2000 buffered writes, $((after - before)) getxattr round trips; user.iscsi.* still reads"

# 3. One budget for the mount: 16 LUNs read at once stay within cache_size + 64 MiB.
CACHE=64
iscsifs_mount "$(tgt_url "$IQN")" "$M" -o "cache_size=${CACHE}M"
pids=()
for n in $(seq 1 $NLUNS); do
	dd if="$M/lun$n" of=/dev/null bs=1M status=none &
	pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || fail "a parallel read of a LUN failed"; done
hwm=$(awk '/^VmHWM:/ { print int($2 / 1024) }' "/proc/$ISCSIFS_PID/status")
log "peak RSS after reading $NLUNS LUNs of $LUNSIZE at once: $hwm MiB (cache_size ${CACHE} MiB)"
if grep -q libasan "/proc/$ISCSIFS_PID/maps"; then
	log "a sanitizer build: its allocator keeps freed memory; RSS not checked"
	iscsifs_umount_ok "$M"
else
	((hwm <= CACHE + 64)) || fail "peak RSS $hwm MiB > cache_size ${CACHE} MiB + 64 MiB"
	iscsifs_umount_ok "$M"
	pass "$NLUNS LUNs read in parallel: peak RSS $hwm MiB <= cache_size + 64 MiB"
fi
