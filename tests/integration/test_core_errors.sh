#!/bin/bash
# Proves bad input fails fast and cleanly: a malformed URL, an unknown target, a missing
# or non-disk LUN, a refused connection, a login that never answers (login_timeout), a
# portal that answers something else than iSCSI and hangs up (exit 3), a mountpoint
# that already is an iscsifs mount, a
# missing mountpoint — each exits non-zero within login_timeout + 5 s with one meaningful
# line on stderr naming the value, leaves nothing mounted and no daemon behind; both
# daemonizing and with -f.
source "$(dirname "$0")/lib.sh"
requires python3

IQN=iqn.2026-11.org.iscsifs.test:errors
LT=2                       # -o login_timeout for every case
EXPECT_TIMEOUT=$((LT + 5)) # the bound on every case
[[ -x $ISCSIFS ]] || fail "iscsifs binary $ISCSIFS missing"
tgt_start
tgt_target 1 "$IQN"
tgt_sparse "$T/lun1.img" 16M
tgt_lun 1 1 "$T/lun1.img"
netstub refuse RPORT
netstub blackhole BPORT
netstub hangup HPORT
M=$T/mnt
mkdir -p "$M"

# bad CASE WANT URL [MOUNTPOINT]: both ways of running iscsifs (daemonizing, and -f)
# exit non-zero within EXPECT_TIMEOUT, print exactly one line on stderr matching WANT
# (an extended regex, case-insensitive), mount nothing and leave no process. Every case
# runs; the failures are listed together at the end.
FAILS=()
bad()
{
	local what=$1 want=$2 url=$3 mnt=${4:-$M} fg lines left rc start secs err
	local -a problems
	for fg in "" -f; do
		problems=()
		err=$T/err
		start=$(date +%s.%N)
		rc=0
		timeout -k 2 "$EXPECT_TIMEOUT" "$ISCSIFS" $fg -o "login_timeout=$LT" "$url" "$mnt" \
			</dev/null >"$T/out" 2>"$err" || rc=$?
		secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
		if ((rc == 0)); then
			problems+=("exit status 0")
		elif ((rc == 124 || rc == 137)); then
			problems+=("still running after ${EXPECT_TIMEOUT} s")
		elif ((rc > 128)); then
			problems+=("killed by signal $((rc - 128))")
		fi
		lines=$(grep -c . "$err" || true)
		((lines == 1)) || problems+=("$lines lines on stderr, want 1")
		grep -qiE -- "$want" "$err" || problems+=("stderr does not match /$want/")
		is_mounted "$mnt" && problems+=("$mnt is mounted afterwards")
		left=$(pgrep -af -- "$ISCSIFS.*$url" || true)
		if [[ -n $left ]]; then
			problems+=("a daemon is still running: $left")
			pkill -KILL -f -- "$ISCSIFS.*$url" || true
			wait_for 5 eval '! is_mounted "$mnt"' || _unmount_one "$mnt"
		fi
		if ((${#problems[@]})); then
			printf 'FAIL: %s%s: exit %s in %ss: %s\n--- stderr ---\n%s\n' "$what" \
				"${fg:+ (-f)}" "$rc" "$secs" "$(IFS=';'; echo "${problems[*]}")" \
				"$(head -c 2000 "$err")" >&2
			FAILS+=("$what${fg:+ (-f)}")
		else
			log "ok$fg: $what: exit $rc in ${secs}s: $(cat "$err")"
		fi
	done
	EXPECT_STDERR=$(cat "$err")
	EXPECT_SECS=$secs
	[[ ${FAILS[*]-} == *"$what"* ]] || pass "$what"
}

# Escape a literal for use in the regexes below.
re() { sed 's/[][\.*^$+?(){}|/]/\\&/g' <<<"$1"; }

P=127.0.0.1:$TGT_PORT
bad "malformed URL (scheme)" "$(re "http://$P/$IQN")|scheme|iscsi://" "http://$P/$IQN"
bad "malformed URL (no iscsi:// at all)" "not-a-url" "not-a-url"
bad "malformed URL (port)" "99999" "iscsi://127.0.0.1:99999/$IQN"
bad "malformed URL (LUN)" "abc" "iscsi://$P/$IQN/abc"
bad "malformed URL (empty host)" "$(re "iscsi:///$IQN")|host" "iscsi:///$IQN"
bad "unknown target" "$(re "$IQN-nosuch")" "iscsi://$P/$IQN-nosuch"
bad "no such LUN" "lun[ #:]*9\b|/9\b" "iscsi://$P/$IQN/9"
bad "LUN 0 is a controller, not a disk" "lun[ #:]*0\b|/0\b" "iscsi://$P/$IQN/0"
bad "connection refused" "refused.*$RPORT|$RPORT.*refused" "iscsi://127.0.0.1:$RPORT/$IQN"
bad "login never answered" "$BPORT" "iscsi://127.0.0.1:$BPORT/$IQN"
grep -qiE 'time' <<<"$EXPECT_STDERR" ||
	FAILS+=("login never answered: stderr '$EXPECT_STDERR' does not say it timed out")
((${EXPECT_SECS%.*} >= LT - 1)) ||
	FAILS+=("login never answered: gave up after ${EXPECT_SECS}s, before login_timeout=$LT")
bad "a portal that is not iSCSI (answers and hangs up)" "not iSCSI|iSCSI target.*$HPORT|$HPORT.*iSCSI target" \
	"iscsi://127.0.0.1:$HPORT/$IQN"
rc=0
"$ISCSIFS" ls "iscsi://127.0.0.1:$HPORT" >/dev/null 2>"$T/err" || rc=$?
((rc == 3)) && [[ $(grep -c . "$T/err") == 1 ]] ||
	FAILS+=("ls of a portal that is not iSCSI: exit $rc (want 3, cannot connect): $(cat "$T/err")")
bad "missing mountpoint" "$(re "$T/no-such-dir")" "iscsi://$P/$IQN" "$T/no-such-dir"
[[ ! -e $T/no-such-dir ]] || FAILS+=("iscsifs created the missing mountpoint $T/no-such-dir")
((${#FAILS[@]} == 0)) || fail "${#FAILS[@]} bad-input case(s) misbehaved: $(printf '[%s] ' "${FAILS[@]}")"

# And the good URL still mounts: the failures above were about the input.
iscsifs_mount "iscsi://$P/$IQN" "$M" -o "login_timeout=$LT"
[[ -f $M/lun1 ]] || fail "lun1 missing after the good mount"
# A second mount on top of it would hide it (its daemon and files go on, and the next
# fusermount3 -u unmounts the wrong one): refused in one line, the first one intact.
rc=0
timeout 20 "$ISCSIFS" -o "login_timeout=$LT" "iscsi://$P/$IQN" "$M" >/dev/null 2>"$T/err" || rc=$?
((rc != 0)) && [[ $(grep -c . "$T/err") == 1 ]] && grep -q 'already an iscsifs mount' "$T/err" ||
	fail "a mount on top of an iscsifs mount: exit $rc: $(cat "$T/err")"
[[ $(grep -c " $M fuse.iscsifs " /proc/mounts) == 1 ]] ||
	fail "a mount on top of an iscsifs mount: $M is mounted $(grep -c " $M " /proc/mounts) times"
log "a mount on top of it: exit $rc: $(cat "$T/err")"
iscsifs_umount_ok "$M"
pass "the same target mounts with a good URL"
