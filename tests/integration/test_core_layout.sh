#!/bin/bash
# Proves the mount layout: one file lun<N> per disk LUN (not the controller LUN 0), with
# size = LUN capacity, st_blksize = LUN block size, mode 0600 (0400 when write-protected
# or -o ro) owned by the mounting user; a single-LUN URL shows only that LUN; -o ro and a
# write-protected LUN refuse writes with EROFS.
source "$(dirname "$0")/lib.sh"
requires python3

IQN=iqn.2026-11.org.iscsifs.test:layout
tgt_start
tgt_standard "$IQN"
M=$T/mnt

# check_file PATH SIZE BLKSIZE MODE
check_file()
{
	local got
	[[ -f $1 ]] || fail "$1 is missing or not a regular file: $(ls -la "$(dirname "$1")")"
	got=$(stat -c '%s %o %a %u %g %F' "$1")
	check_eq "stat of $1 (size blksize mode uid gid type)" "$got" \
		"$2 $3 $4 $(id -u) $(id -g) regular file"
}

# check_listing DIR NAME...: the non-hidden entries of DIR are exactly NAME...
check_listing()
{
	local dir=$1 got want
	shift
	got=$(cd "$dir" && ls -1 | sort | tr '\n' ' ')
	want=$(printf '%s\n' "$@" | sort | tr '\n' ' ')
	check_eq "entries of $dir" "$got" "$want"
}

# check_erofs FILE: opening FILE for writing, or writing to it, fails with EROFS, and
# the backing data does not change.
check_erofs()
{
	local out
	out=$(python3 - "$1" <<'EOF'
import errno, os, sys
path = sys.argv[1]
try:
    fd = os.open(path, os.O_WRONLY)
except OSError as e:
    print("open:" + errno.errorcode.get(e.errno, str(e.errno)))
    sys.exit(0)
try:
    os.pwrite(fd, b"x" * 4096, 0)
    os.fsync(fd)
    print("write:succeeded")
except OSError as e:
    print("write:" + errno.errorcode.get(e.errno, str(e.errno)))
finally:
    try:
        os.close(fd)
    except OSError as e:
        print("close:" + errno.errorcode.get(e.errno, str(e.errno)))
EOF
	)
	case $out in
	open:EROFS | write:EROFS) log "$1: $out" ;;
	*) fail "writing to read-only $1: got '$out', want EROFS at open or write" ;;
	esac
}

# --- the whole target
iscsifs_mount "$(tgt_url "$IQN")" "$M"
check_listing "$M" lun1 lun2 lun3 lun4 lun5 lun6
[[ ! -e $M/lun0 ]] || fail "lun0 (the controller, type 0x0c) is shown"
for n in 1 2 3 4 5 6; do
	mode=600
	((LUN_RO[n] == 0)) || mode=400
	check_file "$M/lun$n" "${LUN_SIZE[n]}" "${LUN_BS[n]}" $mode
done
pass "target URL: lun1..lun6 with the right size, st_blksize, mode and owner; no lun0"

# A write-protected LUN reads but does not write.
head -c 4096 "$M/lun3" | cmp -s - <(head -c 4096 "${LUN_FILE[3]}") ||
	fail "reading read-only lun3 does not give the backing data"
check_erofs "$M/lun3"
check_cmp "${LUN_FILE[3]}" /dev/zero 4096
pass "write-protected LUN: readable, writes fail with EROFS"

# The last byte of the odd-sized LUNs reads (size is exact, not rounded to the cache).
for n in 4 5; do
	got=$(tail -c 1 "$M/lun$n" | od -An -tx1 | tr -d ' ')
	check_eq "last byte of lun$n" "$got" 00
done
iscsifs_umount_ok "$M"

# --- one LUN
iscsifs_mount "$(tgt_url "$IQN" 2)" "$M"
check_listing "$M" lun2
check_file "$M/lun2" "${LUN_SIZE[2]}" 4096 600
iscsifs_umount_ok "$M"
iscsifs_mount "$(tgt_url "$IQN" 6)" "$M"
check_listing "$M" lun6
check_file "$M/lun6" "${LUN_SIZE[6]}" 512 600
iscsifs_umount_ok "$M"
pass "single-LUN URL shows only that LUN"

# --- -o ro
iscsifs_mount "$(tgt_url "$IQN")" "$M" -o ro
check_listing "$M" lun1 lun2 lun3 lun4 lun5 lun6
for n in 1 2 3 4 5 6; do
	check_file "$M/lun$n" "${LUN_SIZE[n]}" "${LUN_BS[n]}" 400
done
check_erofs "$M/lun1"
check_erofs "$M/lun2"
iscsifs_umount_ok "$M"
check_cmp "${LUN_FILE[1]}" /dev/zero
check_cmp "${LUN_FILE[2]}" /dev/zero
pass "-o ro: every file 0400, writes fail with EROFS, backing files untouched"
