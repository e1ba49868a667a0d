#!/bin/bash
# contrib/quickstart.sh — from a fresh Debian checkout to a mounted LUN in one command.
#
#   contrib/quickstart.sh                 build, start a local demo target (tgtd on
#                                         127.0.0.1, a sparse 1 GiB LUN in .demo/) and
#                                         mount it on ./mnt
#   contrib/quickstart.sh URL [MOUNTPOINT]
#                                         build and mount URL (iscsi://host[:port]/IQN[/LUN])
#                                         on MOUNTPOINT (default ./mnt)
#   contrib/quickstart.sh --stop          unmount ./mnt, stop the demo tgtd, remove .demo
#
# Missing Debian packages are installed first (tests/deps.sh: the same list as the
# tests). The demo target needs root (tgtd's management socket only obeys root); mounting
# a URL does not. ./mnt and ./.demo are relative to the repository root.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
DEMO=$ROOT/.demo
STATE=$DEMO/state
IQN=iqn.2026-11.org.iscsifs:demo
ISCSIFS=$ROOT/build/iscsifs

die() { echo "quickstart: $*" >&2; exit 1; }
say() { echo "quickstart: $*"; }

usage() { sed -n '2,/^set /{/^#/s/^# \{0,1\}//p}' "$0"; }

is_mounted()
{
	awk -v m="$(realpath -m "$1")" '$2 == m { f = 1 } END { exit !f }' /proc/mounts
}

# pid_is PID WORD: PID is alive and its command line contains WORD (guards against a
# recycled pid before we signal it).
pid_is()
{
	[[ -n $1 && -r /proc/$1/cmdline ]] && tr '\0' ' ' <"/proc/$1/cmdline" | grep -qF -- "$2"
}

stop()
{
	local mnt=$ROOT/mnt tgt_pid='' tgt_cport='' daemon i
	if [[ -f $STATE ]]; then
		# shellcheck disable=SC1090
		source "$STATE"
		mnt=${MNT:-$mnt} tgt_pid=${TGT_PID:-} tgt_cport=${TGT_CPORT:-}
	fi
	if is_mounted "$mnt"; then
		daemon=$(pgrep -f -- "iscsifs.* $mnt\$" | head -n 1 || true)
		say "unmounting $mnt (dirty data is written first)"
		timeout 60 fusermount3 -u "$mnt" || die "could not unmount $mnt (busy? close files in it and retry)"
		for ((i = 0; i < 600; i++)); do
			[[ -n $daemon ]] && [[ -d /proc/$daemon ]] || break
			sleep 0.1
		done
		[[ -z $daemon || ! -d /proc/$daemon ]] || say "iscsifs (pid $daemon) still running after 60 s"
	else
		say "$mnt is not mounted"
	fi
	if pid_is "$tgt_pid" "$DEMO"; then
		say "stopping the demo tgtd (pid $tgt_pid)"
		local -a adm=(env "TGT_IPC_SOCKET=$DEMO/ipc" timeout 5 tgtadm -C "$tgt_cport" --lld iscsi)
		"${adm[@]}" --op update --mode sys --name State -v offline >/dev/null 2>&1 || true
		"${adm[@]}" --op delete --force --mode target --tid 1 >/dev/null 2>&1 || true
		"${adm[@]}" --op delete --mode system >/dev/null 2>&1 || true
		for ((i = 0; i < 50; i++)); do
			pid_is "$tgt_pid" "$DEMO" || break
			sleep 0.1
		done
		! pid_is "$tgt_pid" "$DEMO" || kill -KILL "$tgt_pid" 2>/dev/null || true
	fi
	if [[ -d $DEMO ]]; then
		say "removing $DEMO"
		rm -rf --one-file-system "$DEMO"
	fi
	[[ ! -d $mnt ]] || rmdir "$mnt" 2>/dev/null || true
	say "stopped"
}

free_port()
{
	local p
	for p in 3260 $(shuf -i 20000-31999 -n 50); do
		[[ -n $(ss -Htan "( sport = :$p )" 2>/dev/null) ]] || { echo "$p"; return 0; }
	done
	return 1
}

start_demo()
{
	local port cport lun=$DEMO/lun1.img i
	((EUID == 0)) || die "the demo target needs root (tgtd): run 'sudo $0', or give a URL"
	if [[ -f $STATE ]]; then
		die "a demo is already set up in $DEMO: run '$0 --stop' first"
	fi
	mkdir -p "$DEMO"
	truncate -s 1G "$lun"
	port=$(free_port) || die "no free TCP port on 127.0.0.1"
	cport=$((1024 + RANDOM % 31000))
	say "starting tgtd on 127.0.0.1:$port (log: $DEMO/tgtd.log)"
	# Its own management socket in .demo: a system tgtd is not disturbed, nor disturbs.
	TGT_IPC_SOCKET=$DEMO/ipc setsid tgtd -f -p "$DEMO/tgtd.pid" \
		--iscsi "portal=127.0.0.1:$port" --control-port "$cport" \
		</dev/null >>"$DEMO/tgtd.log" 2>&1 &
	local pid=$!
	printf 'TGT_PID=%s\nTGT_PORT=%s\nTGT_CPORT=%s\nMNT=%q\n' "$pid" "$port" "$cport" "$MNT" >"$STATE"
	local -a adm=(env "TGT_IPC_SOCKET=$DEMO/ipc" timeout 5 tgtadm -C "$cport" --lld iscsi)
	for ((i = 0; i < 100; i++)); do
		"${adm[@]}" --op show --mode target >/dev/null 2>&1 && break
		[[ -d /proc/$pid ]] || break
		sleep 0.1
	done
	"${adm[@]}" --op show --mode portal 2>/dev/null | grep -qF "127.0.0.1:$port," || {
		tail -n 5 "$DEMO/tgtd.log" >&2
		stop >/dev/null 2>&1 || true
		die "tgtd did not start on 127.0.0.1:$port"
	}
	"${adm[@]}" --op new --mode target --tid 1 --targetname "$IQN"
	"${adm[@]}" --op bind --mode target --tid 1 --initiator-address 127.0.0.1
	"${adm[@]}" --op new --mode logicalunit --tid 1 --lun 1 --backing-store "$lun"
	URL=iscsi://127.0.0.1:$port/$IQN
	[[ $port == 3260 ]] && URL=iscsi://127.0.0.1/$IQN
	say "demo target $IQN, LUN 1 = $lun (1 GiB, sparse)"
}

MNT=
URL=
case ${1:-} in
-h | --help)
	usage
	exit 0
	;;
--stop)
	stop
	exit 0
	;;
-*) die "unknown option $1 (try --help)" ;;
esac
URL=${1:-}
MNT=$(realpath -m "${2:-$ROOT/mnt}")
(($# <= 2)) || die "too many arguments (try --help)"

if is_mounted "$MNT"; then
	die "$MNT is already mounted ($(awk -v m="$MNT" '$2 == m { print $1 }' /proc/mounts));" \
		"run '$0 --stop' or 'fusermount3 -u $MNT' first"
fi

# shellcheck source=tests/deps.sh
source "$ROOT/tests/deps.sh"
deps_install || die "could not install the packages iscsifs needs"

cd "$ROOT"
say "building (build/)"
if [[ ! -f build/build.ninja ]]; then
	meson setup build >/dev/null || die "meson setup build failed"
fi
ninja -C build >/dev/null || die "build failed: run 'ninja -C build' to see why"

DEMO_MODE=0
if [[ -z $URL ]]; then
	DEMO_MODE=1
	start_demo
fi

mkdir -p "$MNT"
say "mounting $URL on $MNT"
if ! "$ISCSIFS" "$URL" "$MNT"; then
	((DEMO_MODE == 0)) || stop >/dev/null 2>&1 || true
	die "iscsifs could not mount $URL"
fi
is_mounted "$MNT" || die "iscsifs returned but $MNT is not mounted"

cat <<EOF

  $URL is mounted on $MNT. Try:

    ls -l $MNT                        one file per LUN: lun1, lun2, ...
    dd if=/dev/urandom of=$MNT/lun1 bs=1M count=16 conv=notrunc,fsync
    getfattr -d $MNT/lun1             target, LUN, WWN, serial, block size
    cat $MNT/.iscsifs/stats.json      cache and I/O counters
    $ISCSIFS stat $MNT --watch
    mkfs.ext4 -F $MNT/lun1            a filesystem on the LUN; then, to use it:
    mkdir -p /tmp/ext && fuse2fs $MNT/lun1 /tmp/ext   (and umount /tmp/ext after)
EOF
if ((DEMO_MODE)); then
	cat <<EOF
    cmp -n 16M $MNT/lun1 $DEMO/lun1.img
                                      the target's backing file holds the same bytes
EOF
fi
echo
if ((DEMO_MODE)); then
	echo "  Stop everything (unmount, stop the demo tgtd, remove .demo):  $0 --stop"
else
	echo "  Unmount:  fusermount3 -u $MNT"
fi
