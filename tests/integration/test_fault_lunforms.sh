#!/bin/bash
# Proves a LUN that cannot be named or reached exactly is never a file under another LUN's
# name (issue 8 §1), with the misbehaving target (tgt reports only the simplest forms):
# LUN 1 reported twice, in peripheral (0x0001...) and flat space (0x4001...) form, LUN 257
# in flat space, one LUN in logical unit addressing (no number) and one in extended
# addressing (libiscsi 1.19 cannot send it). The mount has lun257 only and warns about each
# other LUN with its reason; `iscsifs ls` lists all five, each by its address where the
# number does not name it alone, with the reason; the URL .../1 is refused because LUN 1
# is ambiguous; and a write to lun257 lands in LUN 257's backing file only.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_badtarget.sh"
requires python3

M=$T/mnt
declare -A ADDR=([p1]=0x0001000000000000 [f1]=0x4001000000000000 [f257]=0x4101000000000000
		 [lu]=0x8001000000000000 [ext]=0xd200000000000001)
args=()
for k in p1 f1 f257 lu ext; do
	truncate -s 1M "$T/$k.img"
	args+=(--lun "${ADDR[$k]}=$T/$k.img")
done
badtarget_start "${args[@]}"

# ls: five lines, the reasons
out=$(timeout 60 "$ISCSIFS" ls "$(badtarget_url)" 2>"$T/ls.err") ||
	fail "iscsifs ls exited non-zero: $(cat "$T/ls.err")"
log "$out"
line() { awk -v a="$1" '$1 == a' <<<"$out"; }
for k in p1 f1; do
	[[ $(line "${ADDR[$k]}") == *"not mounted: LUN number 1 is reported in two forms"* ]] ||
		fail "ls: ${ADDR[$k]} not listed by address as an ambiguous LUN 1:
$out"
done
[[ $(line 257) == *disk* && $(line 257) != *"not mounted"* ]] || fail "ls: LUN 257 not a plain disk:
$out"
[[ $(line "${ADDR[lu]}") == *"not mounted: has no LUN number (logical unit addressing)"* ]] ||
	fail "ls: ${ADDR[lu]} lacks its reason:
$out"
[[ $(line "${ADDR[ext]}") == *"not mounted: cannot be addressed"* ]] ||
	fail "ls: ${ADDR[ext]} lacks its reason:
$out"
check_eq "LUNs listed" "$(awk 'NR > 2' <<<"$out" | wc -l)" 5
pass "ls lists every LUN; those without an unambiguous number by address, with the reason"

# the mount: lun257 only, one warning per left-out LUN
iscsifs_mount "$(badtarget_url)" "$M"
check_eq "files" "$(ls "$M" | tr '\n' ' ')" "lun257 "
for k in p1 f1 lu ext; do
	grep -q "LUN ${ADDR[$k]} is left out: " "$DAEMON_LOG" ||
		fail "no warning for ${ADDR[$k]} in the daemon's log"
done
printf 'LUN 257 here\n' | dd of="$M/lun257" conv=notrunc,fsync status=none
iscsifs_umount_ok "$M"
check_eq "first bytes of LUN 257's backing file" "$(head -c 12 "$T/f257.img")" "LUN 257 here"
for k in p1 f1 lu ext; do
	cmp -s "$T/$k.img" /dev/zero -n 1048576 || fail "$k.img (${ADDR[$k]}) was written to"
done
pass "the mount has lun257 alone, warns about the others; its data lands in its own LUN"

# the URL .../1: refused, saying why
EXPECT_TIMEOUT=30
expect_fail_msg "two forms" "$ISCSIFS" -f "$(badtarget_url 1)" "$M"
! is_mounted "$M" || fail "$M is mounted after the refusal"
pass "URL .../1 is refused: LUN 1 is ambiguous"
