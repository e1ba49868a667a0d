#!/bin/bash
# Proves the mission "remote LUNs without root": the whole cycle (mount, write, fsync,
# unmount, data on the target) works (a) as an ordinary user through the setuid
# fusermount3, daemonized, with that user's CHAP secret file, the initiator-name
# fallback (the target sees iqn.2026-11.org.iscsifs:HOSTNAME), its per-LUN lock and
# its log in that user's own directories; and (b) inside an unprivileged user namespace with its own
# mount namespace (`unshare --user --map-root-user --mount`), as a rootless container
# runs it. /dev/fuse is set to 0666 (Debian's default) for the test and restored.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_security.sh"
requires python3 runuser useradd userdel unshare fusermount3
requires_root
requires_fuse

TUSER=iscsifs-test
IQN=iqn.2026-11.org.iscsifs.test:rootless
tgt_start
tgt_target 1 "$IQN"
tgt_sparse "$T/lun1.img" 32M
tgt_lun 1 1 "$T/lun1.img"
tgt_account rootless Rootless-secret-42
tgt_require_chap 1 rootless
URL=$(tgt_url "$IQN")

# the test user (created here, removed at exit unless it existed)
if ! id "$TUSER" >/dev/null 2>&1; then
	useradd --system --no-create-home --home-dir /nonexistent --shell /bin/sh "$TUSER" ||
		fail "useradd $TUSER failed"
	cleanup_fn userdel "$TUSER"
fi
TUID=$(id -u "$TUSER")
# /dev/fuse: 0666 for the test (Debian's default; CI has 0600), restored at exit
FUSE_MODE=$(stat -c %a /dev/fuse)
chmod 666 /dev/fuse
cleanup_fn chmod "$FUSE_MODE" /dev/fuse

# the user's world: $T is root's 0700; U is the user's own
chmod 711 "$T"
U=$T/u
mkdir -p "$U/home" "$U/mnt"
chown -R "$TUSER:" "$U"
chmod 700 "$U"
SECRET=$U/chap.secret
runuser -u "$TUSER" -- sh -c "umask 077; printf 'username = rootless\npassword = Rootless-secret-42\n' >'$SECRET'"
as_user() { runuser -u "$TUSER" -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME="$U/home" "$@"; }
head -c $((4 << 20)) /dev/urandom >"$T/data"
chmod 644 "$T/data"
HOSTNAME_IQN=iqn.2026-11.org.iscsifs:$(hostname | tr 'A-Z' 'a-z' | tr -c 'a-z0-9.:\n-' '-')

# --- (a) an ordinary user, daemonized, through the setuid fusermount3
rc=0
as_user timeout -k 2 60 "$ISCSIFS" -o "secret_file=$SECRET,login_timeout=5" "$URL" "$U/mnt" \
	</dev/null >"$T/a.out" 2>"$T/a.err" || rc=$?
((rc == 0)) || fail "mount as $TUSER exited $rc: $(cat "$T/a.err")"
track_mount "$U/mnt"
line=$(awk -v m="$U/mnt" '$2 == m' /proc/mounts)
[[ $line == *user_id=$TUID,* ]] || fail "mount of $TUSER is not owned by uid $TUID: $line"
dpid=$(pgrep -u "$TUSER" -f -- "$ISCSIFS" | head -n 1)
[[ -n $dpid ]] || fail "no daemon of $TUSER running"
init=$(tgt_adm --op show --mode target | sed -n 's/^ *Initiator: \([^ ]*\).*/\1/p' | head -n 1)
check_eq "initiator name the target sees (fallback, no /etc/iscsi/initiatorname.iscsi)" \
	"$init" "$HOSTNAME_IQN"
# the per-LUN lock (lunlock.h) lives in a 0700 directory of the user's own
lockdir=
for d in "/run/user/$TUID/iscsifs" "/tmp/iscsifs-$TUID"; do
	[[ -d $d ]] && { lockdir=$d; break; }
done
[[ -n $lockdir ]] || fail "no lock directory of $TUSER (/run/user/$TUID/iscsifs or /tmp/iscsifs-$TUID)"
[[ $lockdir != /tmp/* ]] || cleanup_fn rm -rf "$lockdir"
check_eq "owner and mode of the lock directory $lockdir" "$(stat -c '%U %a' "$lockdir")" "$TUSER 700"
[[ -n $(find "$lockdir" -type f -user "$TUSER") ]] || fail "no lock file of $TUSER in $lockdir"
as_user dd if="$T/data" of="$U/mnt/lun1" bs=1M seek=3 conv=notrunc,fsync status=none ||
	fail "dd as $TUSER into the LUN failed"
as_user fusermount3 -u "$U/mnt" || fail "fusermount3 -u as $TUSER failed"
wait_for 30 eval '! pid_alive $dpid' || fail "the daemon of $TUSER did not exit after unmount"
check_cmp "$T/lun1.img" "$T/data" $((4 << 20)) $((3 << 20)) 0
if [[ ! -S /dev/log ]]; then
	logf=$(sed -n 's/^iscsifs: no syslog (\/dev\/log): logging to //p' "$T/a.err")
	[[ $logf == "$U/home/.local/state/iscsifs/"*.log ]] ||
		fail "log file of $TUSER not under its ~/.local/state: '$logf' ($(cat "$T/a.err"))"
	check_eq "owner and mode of $(dirname "$logf")" "$(stat -c '%U %a' "$(dirname "$logf")")" "$TUSER 700"
	check_eq "owner and mode of $logf" "$(stat -c '%U %a' "$logf")" "$TUSER 600"
	grep -q 'unmounted' "$logf" || fail "$logf lacks the unmount line: $(cat "$logf")"
fi
pass "as $TUSER: mount (fusermount3), write + fsync, unmount; data on the target; CHAP from its secret file; initiator $init"

# --- (b) an unprivileged user namespace with its own mount namespace
if ! as_user unshare --user --map-root-user --mount true 2>"$T/unshare.err"; then
	skip "unprivileged user namespaces are not permitted here: $(cat "$T/unshare.err")"
fi
cat >"$U/inside.sh" <<'EOF2'
# runs as "root" of a user namespace the test user made; mounts are private to it
set -u
ISCSIFS=$1 URL=$2 U=$3 DATA=$4
"$ISCSIFS" -f -o "secret_file=$U/chap.secret,login_timeout=5" "$URL" "$U/mnt" \
	</dev/null >"$U/b.log" 2>&1 &
pid=$!
for i in $(seq 100); do
	awk -v m="$U/mnt" '$2 == m { f = 1 } END { exit !f }' /proc/self/mounts && break
	kill -0 $pid 2>/dev/null || { echo "iscsifs exited before mounting"; exit 1; }
	sleep 0.1
done
echo "uid inside: $(id -u); mount: $(awk -v m="$U/mnt" '$2 == m { print $1, $3 }' /proc/self/mounts)"
dd if="$DATA" of="$U/mnt/lun1" bs=1M seek=9 conv=notrunc,fsync status=none || { echo "dd failed"; exit 1; }
umount "$U/mnt" 2>/dev/null || fusermount3 -u "$U/mnt" || { echo "cannot unmount"; exit 1; }
wait $pid
echo "iscsifs exit status $?"
EOF2
chmod 644 "$U/inside.sh"
rc=0
as_user timeout -k 5 90 unshare --user --map-root-user --mount \
	bash "$U/inside.sh" "$ISCSIFS" "$URL" "$U" "$T/data" >"$T/b.out" 2>&1 || rc=$?
_LOGS+=("$U/b.log")
((rc == 0)) && grep -qx 'iscsifs exit status 0' "$T/b.out" ||
	fail "user namespace run: exit $rc: $(cat "$T/b.out")"
grep -q '^uid inside: 0; mount: iscsi://.* fuse.iscsifs$' "$T/b.out" ||
	fail "user namespace run: $(cat "$T/b.out")"
! grep -qF "$U/mnt" /proc/mounts || fail "the user namespace's mount leaked out"
check_cmp "$T/lun1.img" "$T/data" $((4 << 20)) $((9 << 20)) 0
log "user namespace run: $(tr '\n' ';' <"$T/b.out")"
pass "unshare --user --map-root-user --mount as $TUSER: mount, write + fsync, unmount; data on the target"
