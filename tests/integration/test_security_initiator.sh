#!/bin/bash
# Proves tgtd sees the initiator name iscsifs is configured with: -o initiator=NAME when
# given, else InitiatorName= from /etc/iscsi/initiatorname.iscsi, else
# iqn.2026-11.org.iscsifs:<hostname>; that a target whose ACL names one initiator admits
# that name only (mount and SendTargets); and that invalid names are refused.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_security.sh"

IQN=iqn.2026-11.org.iscsifs.test:initiator-open
IQN_ACL=iqn.2026-11.org.iscsifs.test:initiator-acl
ALLOWED=iqn.2026-11.org.example:allowed-host
OTHER=iqn.2026-11.org.example:other-host
LT=5
tgt_start
tgt_target 1 "$IQN"
tgt_sparse "$T/lun1.img" 16M
tgt_lun 1 1 "$T/lun1.img"
# No address ACL on target 2: tgtd admits an initiator when its address OR its name is
# in the target's ACL, so "ALL" (tgt_target's default) would let everyone in.
tgt_adm --op new --mode target --tid 2 --targetname "$IQN_ACL"
tgt_adm --op bind --mode target --tid 2 --initiator-name "$ALLOWED"
tgt_sparse "$T/lun2.img" 16M
tgt_lun 2 1 "$T/lun2.img"
P=$TGT_PORTAL
M=$T/mnt

# The name iscsifs derives when -o initiator= is not given (config.c).
if [[ -r /etc/iscsi/initiatorname.iscsi ]] &&
	DEFAULT=$(sed -n 's/^[[:space:]]*InitiatorName[[:space:]]*=[[:space:]]*//p' \
		/etc/iscsi/initiatorname.iscsi | head -n 1) && [[ -n $DEFAULT ]]; then
	DEFAULT_FROM=/etc/iscsi/initiatorname.iscsi
else
	DEFAULT=iqn.2026-11.org.iscsifs:$(hostname | tr 'A-Z' 'a-z' | sed 's/[^a-z0-9.:-]/-/g')
	DEFAULT_FROM="the host name"
fi

# 1. -o initiator= is what tgtd sees
iscsifs_mount "$(tgt_url "$IQN")" "$M" -o "login_timeout=$LT,initiator=$OTHER"
check_eq "initiator tgtd sees with -o initiator=" "$(tgt_initiators 1)" "$OTHER"
iscsifs_umount_ok "$M"
pass "-o initiator=$OTHER reaches the target"

# 2. the default
iscsifs_mount "$(tgt_url "$IQN")" "$M" -o "login_timeout=$LT"
check_eq "initiator tgtd sees by default (from $DEFAULT_FROM)" "$(tgt_initiators 1)" "$DEFAULT"
iscsifs_umount_ok "$M"
pass "default initiator name $DEFAULT (from $DEFAULT_FROM)"

# 3. an initiator-name ACL admits that name only
iscsifs_mount "$(tgt_url "$IQN_ACL")" "$M" -o "login_timeout=$LT,initiator=$ALLOWED"
[[ -f $M/lun1 ]] || fail "lun1 missing on the ACL target"
check_eq "initiator on the ACL target" "$(tgt_initiators 2)" "$ALLOWED"
iscsifs_umount_ok "$M"
refused "ACL target, another initiator" \
	"target $IQN_ACL not found at $P, or it does not admit initiator $OTHER" \
	"$M" -o "login_timeout=$LT,initiator=$OTHER" "$(tgt_url "$IQN_ACL")" "$M"
[[ "$DEFAULT" == "$ALLOWED" ]] ||
	refused "ACL target, the default initiator" "does not admit initiator $DEFAULT" \
		"$M" -o "login_timeout=$LT" "$(tgt_url "$IQN_ACL")" "$M"
[[ -z $(tgt_initiators 2) ]] || REFUSED_FAILS+=("ACL target holds a session: $(tgt_initiators 2)")

# SendTargets shows the ACL target to the allowed name only
run_bounded 30 "$ISCSIFS" ls -o "login_timeout=$LT,initiator=$ALLOWED" "iscsi://$P" \
	>"$T/ls.allowed" 2>&1 || fail "ls as $ALLOWED: $(cat "$T/ls.allowed")"
grep -qF "$IQN_ACL  $P" "$T/ls.allowed" || fail "ls as $ALLOWED lacks $IQN_ACL: $(cat "$T/ls.allowed")"
run_bounded 30 "$ISCSIFS" ls -o "login_timeout=$LT,initiator=$OTHER" "iscsi://$P" \
	>"$T/ls.other" 2>&1 || fail "ls as $OTHER: $(cat "$T/ls.other")"
grep -qF "$IQN  $P" "$T/ls.other" || fail "ls as $OTHER lacks $IQN: $(cat "$T/ls.other")"
! grep -qF "$IQN_ACL" "$T/ls.other" || fail "ls as $OTHER shows $IQN_ACL: $(cat "$T/ls.other")"
pass "an initiator-name ACL admits $ALLOWED only (login and SendTargets)"

# 4. invalid names are refused before any connection
refused "initiator not an IQN" "invalid initiator name \"not-an-iqn\"" \
	"$M" -o "initiator=not-an-iqn" "$(tgt_url "$IQN")" "$M"
refused "initiator with month 13" "invalid initiator name \"iqn.2026-13.org.example:x\"" \
	"$M" -o "initiator=iqn.2026-13.org.example:x" "$(tgt_url "$IQN")" "$M"
refused "initiator with upper case domain" "invalid initiator name" \
	"$M" -o "initiator=iqn.2026-11.Org.Example:x" "$(tgt_url "$IQN")" "$M"
refused "EUI initiator of 15 hex digits" "invalid initiator name" \
	"$M" -o "initiator=eui.0123456789ABCDE" "$(tgt_url "$IQN")" "$M"
refused_report
[[ -z $(tgt_initiators 1) ]] || fail "target 1 holds a session after the refusals"
pass "ACL refusals and invalid initiator names: refused with their message"

# An EUI name works as well.
iscsifs_mount "$(tgt_url "$IQN")" "$M" -o "login_timeout=$LT,initiator=eui.0123456789ABCDEF"
check_eq "EUI initiator tgtd sees" "$(tgt_initiators 1)" "eui.0123456789ABCDEF"
iscsifs_umount_ok "$M"
pass "an EUI initiator name reaches the target"
