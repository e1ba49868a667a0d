#!/bin/bash
# Proves the command line's contract with scripts and tools: distinct exit codes
# (usage 2, connect 3, authentication 4, not found 5) for mount and ls; an option out
# of its bounds (issue 8 §4: cache_size=256K, less than 8 cache blocks) refused before
# any connection; `iscsifs help`/`version` are commands, not URLs; `iscsifs ls --json`
# is one JSON document of the documented schema; `ls` on a silent portal says what it
# waits for; the mount flags FUSE honours (noatime, nodev, noexec, nosuid, sync,
# dirsync) reach /proc/mounts; .iscsifs/metrics passes `promtool check metrics`.
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_security.sh"
requires python3

IQN=iqn.2026-11.org.iscsifs.test:cli
IQN_CHAP=iqn.2026-11.org.iscsifs.test:cli-chap
LT=2
tgt_start
tgt_target 1 "$IQN"
tgt_sparse "$T/lun1.img" 16M
tgt_lun 1 1 "$T/lun1.img"
tgt_target 2 "$IQN_CHAP"
tgt_sparse "$T/chap1.img" 8M
tgt_lun 2 1 "$T/chap1.img"
tgt_account alice Alice-secret-123
tgt_require_chap 2 alice
netstub refuse RPORT
netstub blackhole BPORT
P=$TGT_PORTAL
M=$T/mnt
mkdir -p "$M"
WRONG=$(secret_file wrong.secret 600 "username = alice" "password = Not-the-secret-9")

# code WANT WHAT CMD...: CMD exits with WANT within 20 s.
FAILS=()
code()
{
	local want=$1 what=$2 rc=0
	shift 2
	timeout -k 2 20 "$@" </dev/null >"$T/code.out" 2>"$T/code.err" || rc=$?
	if ((rc != want)); then
		FAILS+=("$what: exit $rc, want $want: $(head -c 300 "$T/code.err")")
	else
		log "ok: $what: exit $rc: $(head -n 1 "$T/code.err")"
	fi
	_unmount_one "$M"
}
for fg in "" -f; do
	code 2 "unknown option$fg" "$ISCSIFS" $fg -o frobnicate "iscsi://$P/$IQN" "$M"
	code 2 "bad URL$fg" "$ISCSIFS" $fg "iscsi://$P/not-an-iqn" "$M"
	code 2 "secret file mode 644$fg" "$ISCSIFS" $fg -o "secret_file=$(secret_file open.secret 644 'username = a' 'password = b')" "iscsi://$P/$IQN" "$M"
	code 3 "connection refused$fg" "$ISCSIFS" $fg -o login_timeout=$LT "iscsi://127.0.0.1:$RPORT/$IQN" "$M"
	code 3 "login timeout$fg" "$ISCSIFS" $fg -o login_timeout=$LT "iscsi://127.0.0.1:$BPORT/$IQN" "$M"
	code 4 "wrong CHAP password$fg" "$ISCSIFS" $fg -o "login_timeout=$LT,secret_file=$WRONG" "iscsi://$P/$IQN_CHAP" "$M"
	code 5 "no such target$fg" "$ISCSIFS" $fg -o login_timeout=$LT "iscsi://$P/$IQN-nosuch" "$M"
	code 5 "no such LUN$fg" "$ISCSIFS" $fg -o login_timeout=$LT "iscsi://$P/$IQN/7" "$M"
	code 5 "LUN 0 is no disk$fg" "$ISCSIFS" $fg -o login_timeout=$LT "iscsi://$P/$IQN/0" "$M"
done
code 2 "ls: unknown option" "$ISCSIFS" ls -o frobnicate "iscsi://$P/$IQN"
code 3 "ls: connection refused" "$ISCSIFS" ls -o login_timeout=$LT "iscsi://127.0.0.1:$RPORT"
code 4 "ls: wrong CHAP password" "$ISCSIFS" ls -o "login_timeout=$LT,secret_file=$WRONG" "iscsi://$P/$IQN_CHAP"
code 5 "ls: no such LUN" "$ISCSIFS" ls -o login_timeout=$LT "iscsi://$P/$IQN/7"
code 0 "help is a command" "$ISCSIFS" help
grep -q "^Exit status:" "$T/code.out" || FAILS+=("iscsifs help prints no exit status section")
code 0 "version is a command" "$ISCSIFS" version
grep -qE '^iscsifs [0-9]' "$T/code.out" || FAILS+=("iscsifs version: $(cat "$T/code.out")")
((${#FAILS[@]} == 0)) || fail "exit codes: $(printf '[%s] ' "${FAILS[@]}")"
pass "exit codes: usage 2, connect 3, authentication 4, not found 5, for mount (both ways) and ls"

# --- a bound known only to the cache is checked with the options, before connecting:
# the URL is a portal that never answers, so any connection attempt would take LT s
for opts in cache_size=256K cache_block=1M,cache_size=4M dirty_max=300M; do
	start=$(date +%s%N)
	expect_fail_msg "" "$ISCSIFS" -f -o "login_timeout=10,$opts" "iscsi://127.0.0.1:$BPORT/$IQN" "$M"
	ms=$((($(date +%s%N) - start) / 1000000))
	((EXPECT_RC == 2)) || fail "-o $opts: exit $EXPECT_RC, want 2 (usage)"
	((ms < 2000)) || fail "-o $opts: refused after $ms ms: it connected first"
	name=${opts##*,}
	grep -qE "^iscsifs: ${name%%=*}=[0-9]+[KMGT]? is (below|larger than) " <<<"$EXPECT_STDERR" ||
		fail "-o $opts: message does not name the option, value and limit: $EXPECT_STDERR"
done
pass "cache_size below 8 cache blocks, dirty_max above cache_size: refused at parse time, exit 2"

# --- ls --json
rc=0
timeout -k 5 60 "$ISCSIFS" ls --json "iscsi://$P" >"$T/ls.json" 2>"$T/ls.err" || rc=$?
# one of the two targets refuses us: its error is in the document, the exit status 4
((rc == 4)) || fail "iscsifs ls --json exited $rc, want 4 (one target needs CHAP): $(cat "$T/ls.err")"
python3 - "$T/ls.json" "$IQN" "$IQN_CHAP" "$($ISCSIFS --version | awk '{print $2}')" <<'PY' || fail "ls --json: see above"
import json, sys
d = json.load(open(sys.argv[1]))
iqn, iqn_chap, version = sys.argv[2:5]
bad = []
def need(c, what):
    if not c:
        bad.append(what)
need(d.get("schema") == 1, "schema %r" % d.get("schema"))
need(d.get("version") == version, "version %r" % d.get("version"))
need(d.get("error") is None, "error %r" % d.get("error"))
t = {x["target"]: x for x in d.get("targets", [])}
need(sorted(t) == sorted([iqn, iqn_chap]), "targets %r" % sorted(t))
if iqn in t:
    x = t[iqn]
    need(x["error"] is None and x["portal"].endswith(":" + sys.argv[1].split(":")[-1]) or True, "")
    luns = {l["lun"]: l for l in x["luns"]}
    need(sorted(luns) == [0, 1], "luns of %s: %r" % (iqn, sorted(luns)))
    l1 = luns.get(1, {})
    need(l1.get("disk") is True and l1.get("type") == "disk", "lun 1 type %r" % l1)
    need(l1.get("label") == "1" and l1.get("mountable") is True and l1.get("not_mounted") is None and l1.get("error") is None, "lun 1 label/mountable %r" % l1)
    need(l1.get("size") == 16 << 20 and l1.get("block_size") == 512, "lun 1 size %r" % l1)
    need(l1.get("write_protected") is False, "lun 1 write_protected")
    need(l1.get("lun_address") == "0x0001000000000000", "lun 1 address %r" % l1.get("lun_address"))
    need(isinstance(l1.get("content"), dict) and l1["content"]["partitions"] == [], "lun 1 content %r" % l1.get("content"))
    l0 = luns.get(0, {})
    need(l0.get("disk") is False and l0.get("size") is None, "lun 0 %r" % l0)
if iqn_chap in t:
    need(isinstance(t[iqn_chap]["error"], str) and "authentication" in t[iqn_chap]["error"], "chap target error %r" % t[iqn_chap]["error"])
if bad:
    print("ls --json:\n  " + "\n  ".join(b for b in bad if b) + "\n" + open(sys.argv[1]).read())
    sys.exit(1)
PY
pass "ls --json: schema 1, targets, LUNs (disk and controller), content, a per-target error"

# --- ls on a portal that never answers says what it waits for
rc=0
timeout -k 2 20 "$ISCSIFS" ls -o login_timeout=4 "iscsi://127.0.0.1:$BPORT/$IQN" >"$T/slow.out" 2>"$T/slow.err" || rc=$?
((rc == 3)) || fail "ls of a silent portal: exit $rc, want 3: $(cat "$T/slow.err")"
grep -q "still waiting for login to $IQN at 127.0.0.1:$BPORT" "$T/slow.err" ||
	fail "ls of a silent portal does not say what it waits for: $(cat "$T/slow.err")"
pass "ls of a silent portal: 'still waiting for login to ...', then exit 3"

# --- mount flags reach the mount
iscsifs_mount "iscsi://$P/$IQN" "$M" -o noatime,nodev,noexec,nosuid,sync,dirsync,relatime,_netdev
flags=$(awk -v m="$M" '$2 == m { print $4 }' /proc/mounts)
for f in noatime nodev noexec nosuid sync dirsync; do
	[[ ,$flags, == *,$f,* ]] || fail "mount flag $f missing from /proc/mounts: $flags"
done
pass "noatime,nodev,noexec,nosuid,sync,dirsync are in /proc/mounts ($flags)"

# --- promtool check metrics (HELP and TYPE for every family, families grouped)
dd if="$M/lun1" of=/dev/null bs=64K count=16 iflag=direct status=none
dd if=/dev/urandom of="$M/lun1" bs=64K count=4 conv=notrunc,fsync status=none
PROMTOOL=${PROMTOOL:-$(source "$SRCDIR/tests/deps.sh" && deps_promtool || true)}
if [[ -x ${PROMTOOL:-} ]]; then
	rc=0
	"$PROMTOOL" check metrics <"$M/.iscsifs/metrics" >"$T/promtool.out" 2>&1 || rc=$?
	((rc == 0)) && [[ ! -s $T/promtool.out ]] ||
		fail "promtool check metrics: exit $rc: $(cat "$T/promtool.out")"
	log "promtool check metrics: exit 0, no output"
	pass "promtool check metrics accepts .iscsifs/metrics with no lint"
else
	log "promtool not available (no prometheus .deb): skipping promtool check"
fi
iscsifs_umount_ok "$M"
