#!/bin/bash
# tests/sweep-stale.sh — remove what killed integration tests left behind, and nothing
# else. Run by .ci/run before the tests and by tests/run.sh after them.
#
# A test normally cleans up after itself (lib.sh's EXIT trap). When meson's timeout
# SIGKILLs a test, its FUSE mounts, daemons and temporary directory can stay. Everything
# a test creates lives under a directory ${TMPDIR:-/tmp}/iscsifs-test.XXXXXX, and every
# process it starts names that directory on its command line (tgtd -p DIR/tgt/tgtd.pid,
# iscsifs ... DIR/mnt), so "stale" is decided from that alone:
#   - a tgtd or iscsifs naming such a directory whose parent is no longer a test script
#   - a mount under such a directory that no live process names
#   - such a directory older than 30 minutes that nothing names and nothing is mounted in
# A system tgtd, other people's mounts and the quickstart demo are never touched.
set -uo pipefail

roots=(/tmp)
[[ -z ${TMPDIR:-} || $TMPDIR == /tmp ]] || roots+=("$TMPDIR")
pattern='/iscsifs-test\.[A-Za-z0-9]{6}(/|$)'

cmdline() { { tr '\0' ' ' <"/proc/$1/cmdline"; } 2>/dev/null; }

# Processes (pid + command line) naming a test directory.
ours()
{
	local p c
	for p in /proc/[0-9]*; do
		p=${p#/proc/}
		((p == $$)) && continue
		c=$(cmdline "$p") || continue
		[[ $c =~ $pattern ]] && printf '%s %s\n' "$p" "$c"
	done
}

alive() { [[ -d /proc/$1 ]] && ! grep -q '^State:.*[ZX]' "/proc/$1/status" 2>/dev/null; }

# 1. Orphaned tgtd / iscsifs / fuse2fs / python stubs of dead tests.
while read -r pid cmd; do
	set -- $cmd
	case $(basename "$1") in
	tgtd | iscsifs | fuse2fs | python3*) ;;
	*) continue ;;
	esac
	ppid=$(awk '/^PPid:/ { print $2 }' "/proc/$pid/status" 2>/dev/null) || continue
	[[ -n $ppid ]] || continue
	if ((ppid > 1)) && [[ $(cmdline "$ppid") == *test_*.sh* ]]; then
		continue # its test is still running
	fi
	echo "sweep: stale test process $pid: $cmd" >&2
	kill -TERM "$pid" 2>/dev/null
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		alive "$pid" || break
		sleep 0.5
	done
	alive "$pid" && kill -KILL "$pid" 2>/dev/null
done < <(ours)

# 2. Mounts under a test directory that no live process serves.
live=$(ours)
awk '{ print $2 }' /proc/mounts | grep -E "$pattern" | sort -r | while read -r mnt; do
	grep -qF -- " $mnt" <<<"$live" && continue
	echo "sweep: stale mount $mnt" >&2
	timeout 10 fusermount3 -uz "$mnt" 2>/dev/null || timeout 10 umount -l "$mnt" 2>/dev/null ||
		echo "sweep: cannot unmount $mnt" >&2
done

# 3. Old test directories nobody uses.
live=$(ours)
for root in "${roots[@]}"; do
	find "$root" -maxdepth 1 -type d -name 'iscsifs-test.??????' -mmin +30 2>/dev/null
done | while read -r dir; do
	grep -qF -- "$dir/" <<<"$live" && continue
	grep -qF -- " $dir/" /proc/mounts && continue
	echo "sweep: removing stale $dir" >&2
	rm -rf --one-file-system "$dir"
done
exit 0
