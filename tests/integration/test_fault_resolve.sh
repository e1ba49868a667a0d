#!/bin/bash
# Proves a host name that does not resolve fails a mount, a portal mount and `ls` within
# login_timeout + 5 s with the usual one-line message (what, which value, what to do),
# not libiscsi's raw "Can not resolv into IPv4/v6.", and leaves nothing mounted or
# running. A DNS server that hangs cannot be scripted here; tests/unit/test_resolve.c
# proves that case is bounded by login_timeout too.
source "$(dirname "$0")/lib.sh"

HOST=nosuch.invalid        # RFC 6761: never resolves
LT=2
EXPECT_TIMEOUT=$((LT + 5))
M=$T/mnt
mkdir -p "$M"

for url in "iscsi://$HOST/iqn.2026-11.org.iscsifs.test:resolve/1" \
	"iscsi://$HOST:3261/iqn.2026-11.org.iscsifs.test:resolve" "iscsi://$HOST"; do
	for cmd in mount ls; do
		if [[ $cmd == mount ]]; then
			expect_fail_msg "$HOST" "$ISCSIFS" -f -o "login_timeout=$LT" "$url" "$M"
		else
			expect_fail_msg "$HOST" "$ISCSIFS" ls -o "login_timeout=$LT" "$url"
		fi
		[[ $(grep -c . <<<"$EXPECT_STDERR") == 1 ]] ||
			fail "$cmd $url: want one line on stderr, got: $EXPECT_STDERR"
		grep -qiE "does not resolve|did not resolve in time" <<<"$EXPECT_STDERR" ||
			fail "$cmd $url: the message does not say the host name does not resolve: $EXPECT_STDERR"
		grep -qi "Can not resolv" <<<"$EXPECT_STDERR" &&
			fail "$cmd $url: libiscsi's raw message reached the user: $EXPECT_STDERR"
		grep -qiE "check the host name|DNS" <<<"$EXPECT_STDERR" ||
			fail "$cmd $url: the message does not say what to check: $EXPECT_STDERR"
		is_mounted "$M" && fail "$cmd $url: $M is mounted afterwards"
	done
done
pass "an unresolvable host fails mount and ls within $EXPECT_TIMEOUT s with one line naming it"
