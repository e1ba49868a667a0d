# shellcheck shell=bash
# tests/integration/lib_security.sh — helpers for the security tests (suite 'security'),
# sourced after lib.sh: CHAP accounts on our tgtd, secret files, a TCP tap, and
# `refused`, which runs iscsifs where it must fail and checks everything around the
# failure (message, exit status, nothing mounted, no daemon left, no secret printed).
#
# Facts about tgt 1.0.85 and libiscsi 1.19 these tests rely on, checked by hand:
#  - `tgtadm --op bind --mode account --tid T --user U` makes target T require CHAP
#    user U; with `--outgoing` U is the target's own account for mutual CHAP. Without
#    --tid the account is bound to discovery sessions (SendTargets), as tgt-admin's
#    incomingdiscoveryuser / outgoingdiscoveryuser do. ("--tid 0" is refused.)
#  - tgtd answers a wrong user, a wrong password, no credentials and a mutual-CHAP
#    login to a target without an outgoing account alike: login status 0x0201, which
#    libiscsi reports as "Failed to log in to target. Status: Authentication
#    failure(513)".
#  - a target whose outgoing password differs from our target_password: libiscsi says
#    "Authentication failed. Invalid CHAP_R response from the target"; another outgoing
#    user name: "Failed to log in to target. Wrong CHAP targetname received: NAME"; a
#    target with no CHAP at all: "... It did not return CHAP_N during SECNEG."
#  - tgtd admits an initiator whose address OR name is in the target's ACL (so a name
#    ACL means nothing next to tgt_target's "ALL"); one that is not admitted gets
#    "Status: Target not found(515)", and SendTargets leaves that target out.
#  - `tgtadm --op show --mode target` lists each session as "Initiator: NAME alias: ...";
#    with --tid it also shows the target's parameters (HeaderDigest=...). `--op show
#    --mode session` is an invalid request in 1.0.85.
#  - LIBISCSI_DEBUG=N in iscsifs's environment turns on libiscsi's own log on stderr;
#    at 6 and up it shows every key of the target's login answer ("TargetLoginReply:
#    HeaderDigest=CRC32C"), i.e. what was negotiated.

# SECRETS: every secret the test uses; no_secret_in and refused look for each of them.
SECRETS=()

# secret_file NAME MODE LINE...: $T/NAME with these lines and mode; prints the path.
secret_file()
{
	local f=$T/$1 mode=$2
	shift 2
	rm -f "$f"
	(umask 077 && printf '%s\n' "$@" >"$f")
	chmod "$mode" "$f"
	echo "$f"
}

# tgt_account USER PASSWORD: a CHAP account on our tgtd (not bound to anything yet);
# like the binds below it is replayed by tgt_restart.
tgt_account()
{
	SECRETS+=("$2")
	_tgt_cfg --op new --mode account --user "$1" --password "$2" >/dev/null
}

# tgt_require_chap TID|discovery USER [--outgoing]: bind the account to target TID (or
# to discovery sessions); --outgoing makes it the target's own account (mutual CHAP).
tgt_require_chap()
{
	local -a tid=()
	[[ $1 == discovery ]] || tid=(--tid "$1")
	_tgt_cfg --op bind --mode account "${tid[@]}" --user "$2" ${3:+"$3"} >/dev/null
}

# tgt_initiators TID: the initiator names of the sessions tgtd holds on target TID.
tgt_initiators()
{
	tgt_adm --op show --mode target | awk -v t="Target $1:" '
		/^Target [0-9]+:/ { on = index($0, t) == 1 }
		on && $1 == "Initiator:" { print $2 }'
}

# no_secret_in WHAT FILE...: none of SECRETS occurs in FILE (binary-safe).
no_secret_in()
{
	local what=$1 f s
	shift
	for f in "$@"; do
		for s in "${SECRETS[@]}"; do
			if grep -qaF -- "$s" "$f"; then
				fail "$what: a secret appears in $f: $(grep -naF -- "$s" "$f" |
					sed "s/$s/<SECRET>/g" | head -n 3)"
			fi
		done
	done
}

# tcptap VAR DEST_PORT [--max-conns N]: a forwarder (tcptap.py) from a free loopback
# port, whose number goes to VAR, to 127.0.0.1:DEST_PORT; with --max-conns N it takes N
# connections and refuses the rest.
tcptap()
{
	local var=$1 dest=$2 portfile=$T/tcptap.$RANDOM.port
	shift 2
	requires python3
	python3 "$SRCDIR/tests/integration/tcptap.py" "$portfile" 127.0.0.1 "$dest" "$@" \
		</dev/null >>"$T/tcptap.log" 2>&1 &
	track_pid $!
	wait_for 10 test -s "$portfile" || fail "tcptap.py did not start: $(cat "$T/tcptap.log")"
	printf -v "$var" '%s' "$(cat "$portfile")"
}

# REFUSED_ENV: extra VAR=VALUE words for the command refused runs (e.g. CHAP variables).
REFUSED_ENV=()

# refused WHAT WANT MNT|- ARGS...: `$ISCSIFS ARGS` must fail. For a mount (MNT given)
# it runs twice, daemonizing and with -f in front of ARGS; for `ls` (MNT "-") once.
# Each run must exit non-zero (not by timeout or signal) within EXPECT_TIMEOUT, with
# WANT (a fixed string, case-insensitive) in its output (stderr; stdout too for ls,
# which prints per-target errors there); a mount must print exactly one line on
# stderr, leave MNT unmounted and no process behind. No SECRET may appear anywhere.
# Every case runs; failures are collected in REFUSED_FAILS for the caller.
REFUSED_FAILS=()
refused()
{
	local what=$1 want=$2 mnt=$3 fg rc lines left secs start s out
	local -a problems modes=("" -f)
	shift 3
	[[ $mnt != - ]] || modes=(ls)
	for fg in "${modes[@]}"; do
		problems=()
		local -a cmd=("$@")
		[[ $fg != -f ]] || cmd=(-f "$@")
		start=$(date +%s.%N)
		rc=0
		env "${REFUSED_ENV[@]}" timeout -k 2 "$EXPECT_TIMEOUT" "$ISCSIFS" "${cmd[@]}" \
			</dev/null >"$T/refused.out" 2>"$T/refused.err" || rc=$?
		secs=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
		if ((rc == 0)); then
			problems+=("exit status 0")
		elif ((rc == 124 || rc == 137)); then
			problems+=("still running after ${EXPECT_TIMEOUT} s")
		elif ((rc > 128)); then
			problems+=("killed by signal $((rc - 128))")
		fi
		out=$T/refused.err
		if [[ $fg == ls ]]; then
			cat "$T/refused.out" "$T/refused.err" >"$T/refused.all"
			out=$T/refused.all
		fi
		grep -qiF -- "$want" "$out" || problems+=("output lacks \"$want\"")
		for s in "${SECRETS[@]}"; do
			if grep -qaF -- "$s" "$T/refused.out" "$T/refused.err"; then
				problems+=("a secret is printed")
			fi
		done
		if [[ $fg != ls ]]; then
			lines=$(grep -c . "$T/refused.err" || true)
			((lines == 1)) || problems+=("$lines lines on stderr, want 1")
			is_mounted "$mnt" && problems+=("$mnt is mounted afterwards")
			left=$(pgrep -f -- "$ISCSIFS.* $mnt\$" || true)
			if [[ -n $left ]]; then
				problems+=("a daemon is still running: pid $left")
				_unmount_one "$mnt"
				for s in $left; do end_pid "$s" 2; done
			fi
		fi
		if ((${#problems[@]})); then
			printf 'FAIL: %s%s: exit %s in %ss: %s\n--- stdout ---\n%s\n--- stderr ---\n%s\n' \
				"$what" "${fg:+ ($fg)}" "$rc" "$secs" "$(IFS=';'; echo "${problems[*]}")" \
				"$(head -c 2000 "$T/refused.out")" "$(head -c 2000 "$T/refused.err")" |
				sed "$(for s in "${SECRETS[@]}"; do printf 's/%s/<SECRET>/g;' "$s"; done)" >&2
			REFUSED_FAILS+=("$what${fg:+ ($fg)}")
		else
			log "ok${fg:+ ($fg)}: $what: exit $rc in ${secs}s: $(head -n 1 "$out")"
		fi
	done
	# shellcheck disable=SC2034 # for the caller
	EXPECT_STDERR=$(cat "$T/refused.err")
}

# refused_report: fail when any refused case failed; else PASS.
refused_report()
{
	((${#REFUSED_FAILS[@]} == 0)) ||
		fail "${#REFUSED_FAILS[@]} case(s) misbehaved: $(printf '[%s] ' "${REFUSED_FAILS[@]}")"
}
