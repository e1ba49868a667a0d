#!/bin/bash
# Proves every bad login and every bad secret setup is refused with its own message
# (authentication failures name the target and which side failed), mounts nothing,
# leaves no daemon, and never prints a secret: no credentials, wrong user, wrong
# password, wrong target secret or name (mutual CHAP), identical secrets, loose or
# foreign secret file, malformed file, unknown key, missing file, password in the URL
# or in -o — daemonizing and with -f; and `iscsifs ls` likewise.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_security.sh"

IQN=iqn.2026-11.org.iscsifs.test:refusals
PW_IN=InSecret-7Qx2mB       # alice's password (initiator side)
PW_OUT=OutSecret-9Zk4vR     # tgtout's password (the target's own, mutual CHAP)
PW_BAD=WrongSecret-3Fh8pL   # a password no account has
LT=5
EXPECT_TIMEOUT=$((LT + 10))
tgt_start
tgt_target 1 "$IQN"
tgt_sparse "$T/lun1.img" 16M
tgt_lun 1 1 "$T/lun1.img"
tgt_account alice "$PW_IN"
tgt_account tgtout "$PW_OUT"
tgt_require_chap 1 alice
tgt_require_chap 1 tgtout --outgoing
tgt_require_chap discovery alice
SECRETS+=("$PW_BAD")
M=$T/mnt
mkdir -p "$M"
URL=$(tgt_url "$IQN")
P=$TGT_PORTAL
O=(-o "login_timeout=$LT")

sf() { secret_file "$@"; }

# --- the target refuses us
refused "no credentials" \
	"authentication failed for $IQN at $P: the target requires CHAP and no credentials were given" \
	"$M" "${O[@]}" "$URL" "$M"
F=$(sf wronguser.secret 600 "username = mallory" "password = $PW_IN")
refused "wrong user" \
	"authentication failed for $IQN at $P: the target refused our CHAP credentials" \
	"$M" "${O[@]}" -o "secret_file=$F" "$URL" "$M"
F=$(sf wrongpw.secret 600 "username = alice" "password = $PW_BAD")
refused "wrong password" \
	"authentication failed for $IQN at $P: the target refused our CHAP credentials (check username and password in the secret file)" \
	"$M" "${O[@]}" -o "secret_file=$F" "$URL" "$M"
REFUSED_ENV=(LIBISCSI_CHAP_USERNAME=alice "LIBISCSI_CHAP_PASSWORD=$PW_BAD")
refused "wrong password from the environment" \
	"the target refused our CHAP credentials (check username and password in LIBISCSI_CHAP_USERNAME/_PASSWORD)" \
	"$M" "${O[@]}" "$URL" "$M"
REFUSED_ENV=()

# --- the target fails our challenge (mutual CHAP)
F=$(sf wrongtpw.secret 600 "username = alice" "password = $PW_IN" \
	"target_username = tgtout" "target_password = $PW_BAD")
refused "wrong target secret (mutual)" \
	"authentication failed for $IQN at $P: the target did not prove it knows target_password (mutual CHAP)" \
	"$M" "${O[@]}" -o "secret_file=$F" "$URL" "$M"
F=$(sf wrongtuser.secret 600 "username = alice" "password = $PW_IN" \
	"target_username = someoneelse" "target_password = $PW_OUT")
refused "wrong target user name (mutual)" \
	"authentication failed for $IQN at $P: the target did not prove it knows target_password (mutual CHAP); it answered as another user" \
	"$M" "${O[@]}" -o "secret_file=$F" "$URL" "$M"

# --- refused before any connection: the secrets themselves
F=$(sf same.secret 600 "username = alice" "password = $PW_IN" \
	"target_username = tgtout" "target_password = $PW_IN")
refused "identical initiator and target secrets" \
	"mutual CHAP needs different initiator and target secrets" \
	"$M" "${O[@]}" -o "secret_file=$F" "$URL" "$M"
F=$(sf loose.secret 644 "username = alice" "password = $PW_IN")
refused "secret file mode 0644" \
	"secret file $F is readable or writable by group or others (mode 0644): chmod 600 $F" \
	"$M" "${O[@]}" -o "secret_file=$F" "$URL" "$M"
F=$(sf groupw.secret 620 "username = alice" "password = $PW_IN")
refused "secret file mode 0620" "(mode 0620)" "$M" "${O[@]}" -o "secret_file=$F" "$URL" "$M"
F=$(sf theirs.secret 600 "username = alice" "password = $PW_IN")
chown nobody "$F"
refused "secret file owned by someone else" \
	"secret file $F is owned by uid $(id -u nobody), not by you (uid 0)" \
	"$M" "${O[@]}" -o "secret_file=$F" "$URL" "$M"
refused "missing secret file" "cannot open secret file $T/nonexistent.secret" \
	"$M" "${O[@]}" -o "secret_file=$T/nonexistent.secret" "$URL" "$M"
F=$(sf malformed.secret 600 "username = alice" "$PW_IN")
refused "malformed secret file" "secret file $F line 2: expected \"key = value\"" \
	"$M" "${O[@]}" -o "secret_file=$F" "$URL" "$M"
F=$(sf unknown.secret 600 "# lab" "username = alice" "pasword = $PW_IN")
refused "unknown key in the secret file" "secret file $F line 3: unknown key" \
	"$M" "${O[@]}" -o "secret_file=$F" "$URL" "$M"
F=$(sf bare.secret 600 "username = alice" "${PW_IN:0:5}=${PW_IN:5}")
refused "a bare password with '=' is an unknown key, not echoed" "line 2: unknown key" \
	"$M" "${O[@]}" -o "secret_file=$F" "$URL" "$M"
grep -qF "${PW_IN:0:5}" <<<"$EXPECT_STDERR" &&
	REFUSED_FAILS+=("bare password: part of it is printed: $EXPECT_STDERR")

# --- a password on the command line
refused "password in the URL" \
	"password in the URL is not allowed: put it in a secret file and pass -o secret_file=PATH" \
	"$M" "${O[@]}" "iscsi://alice:$PW_IN@$P/$IQN" "$M"
refused "password in the URL (%)" "password in the URL is not allowed" \
	"$M" "${O[@]}" "iscsi://alice%$PW_IN@$P/$IQN" "$M"
refused "password as URL parameter" "password in the URL is not allowed" \
	"$M" "${O[@]}" "$URL?target_password=$PW_IN" "$M"
refused "password option" \
	"password on the command line is not allowed (option \"password\"): put it in a secret file and pass -o secret_file=PATH" \
	"$M" "${O[@]}" -o "password=$PW_IN" "$URL" "$M"
refused "chap_secret option" "password on the command line is not allowed" \
	"$M" "${O[@]}" -o "chap_secret=$PW_IN" "$URL" "$M"

# --- iscsifs ls: discovery requires CHAP (bound to discovery above), so does the target
refused "ls without credentials (discovery)" \
	"authentication failed for discovery at $P: the target requires CHAP" \
	- ls "${O[@]}" "iscsi://$P"
F=$(sf lswrong.secret 600 "username = alice" "password = $PW_BAD")
refused "ls with a wrong password (discovery)" \
	"authentication failed for discovery at $P: the target refused our CHAP credentials" \
	- ls "${O[@]}" -o "secret_file=$F" "iscsi://$P"
refused "ls of one target with a wrong password" \
	"iscsifs: authentication failed for $IQN at $P: the target refused our CHAP credentials" \
	- ls "${O[@]}" -o "secret_file=$F" "$URL"
refused "ls with a password in the URL" "password in the URL is not allowed" \
	- ls "${O[@]}" "iscsi://alice:$PW_IN@$P"

# --- discovery does not check the portal (see session.c new_context), the target does
F=$(sf wrongtpw2.secret 600 "username = alice" "password = $PW_IN" \
	"target_username = tgtout" "target_password = $PW_BAD")
refused "portal URL, wrong target secret (mutual)" \
	"authentication failed for $IQN at $P: the target did not prove it knows target_password (mutual CHAP)" \
	"$M" "${O[@]}" -o "secret_file=$F" "iscsi://$P" "$M"
refused "ls of the portal, wrong target secret (mutual)" \
	"iscsifs: authentication failed for $IQN at $P: the target did not prove it knows target_password" \
	- ls "${O[@]}" -o "secret_file=$F" "iscsi://$P"

# None of the refused logins left a session behind on the target.
[[ -z $(tgt_initiators 1) ]] || REFUSED_FAILS+=("tgtd still holds sessions: $(tgt_initiators 1)")
refused_report
pass "every refusal: its message, a non-zero exit, nothing mounted, no daemon, no secret"

# And the right secrets mount (the refusals were about the credentials).
F=$(sf good.secret 600 "username = alice" "password = $PW_IN" \
	"target_username = tgtout" "target_password = $PW_OUT")
iscsifs_mount "$URL" "$M" "${O[@]}" -o "secret_file=$F"
[[ -f $M/lun1 ]] || fail "lun1 missing after the good mount"
iscsifs_umount_ok "$M"
pass "the same target mounts with the right secrets"
