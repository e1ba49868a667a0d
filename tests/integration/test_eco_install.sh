#!/bin/bash
# Proves what `meson install` delivers and that it works where it lands: the staged
# file list (binary, man page, bash completion, systemd unit, examples) is exactly the
# expected one; `man -l` renders iscsifs.1 without warnings and its OPTIONS name every
# option of `iscsifs --help`, its EXIT STATUS every code; the systemd units pass
# `systemd-analyze verify` with no output; the bash completion completes options and
# their values; the Kubernetes Pod manifest parses (python3-yaml) and names only -o
# options the binary accepts, with the secret file from a 0400 Secret volume and the
# mount shared through mountPropagation: Bidirectional.
source "$(dirname "$0")/lib.sh"
requires python3 man

[[ -n ${BUILDDIR:-} && -f $BUILDDIR/build.ninja ]] || skip "BUILDDIR (meson's build directory) not set"

# --- meson install --destdir: the list of files
D=$T/dest
meson install -C "$BUILDDIR" --no-rebuild --destdir "$D" >"$T/install.log" 2>&1 ||
	fail "meson install --destdir failed: $(tail -n 20 "$T/install.log")"
prefix=$(meson introspect "$BUILDDIR" --buildoptions |
	python3 -c 'import json, sys; print([o["value"] for o in json.load(sys.stdin) if o["name"] == "prefix"][0])')
got=$(cd "$D" && find . -type f | sed 's|^\.||' | sort)
comp=$(pkg-config --variable=completionsdir bash-completion 2>/dev/null | sed "s|^/usr|$prefix|")
[[ -n $comp ]] || comp=$prefix/share/bash-completion/completions
want=$(sort <<EOF2
$prefix/bin/iscsifs
$prefix/share/man/man1/iscsifs.1
$comp/iscsifs
$prefix/lib/systemd/system/iscsifs@.service
$prefix/share/doc/iscsifs/examples/mnt-san.mount
$prefix/share/doc/iscsifs/examples/mnt-san.conf.example
$prefix/share/doc/iscsifs/examples/Containerfile
$prefix/share/doc/iscsifs/examples/pod.yaml
$prefix/share/doc/iscsifs/examples/README.md
EOF2
)
[[ $got == "$want" ]] || fail "meson install --destdir installs a different set of files:
$(diff <(echo "$want") <(echo "$got"))"
"$D$prefix/bin/iscsifs" --version >/dev/null || fail "the installed binary does not run"
log "installed files:"$'\n'"$got"
pass "meson install --destdir: binary, man page, bash completion, systemd unit, examples"

# --- man -l renders the installed page, without warnings
MAN=$D$prefix/share/man/man1/iscsifs.1
MANWIDTH=80 man --warnings -l "$MAN" >"$T/man.txt" 2>"$T/man.err" || fail "man -l $MAN failed: $(cat "$T/man.err")"
[[ ! -s $T/man.err ]] || fail "man -l warns: $(cat "$T/man.err")"
for s in NAME SYNOPSIS DESCRIPTION URL COMMANDS OPTIONS "SECRET FILE" "FILES IN THE MOUNT" \
	"JSON OUTPUT" SIGNALS "EXIT STATUS" ENVIRONMENT FILES SYSTEMD EXAMPLES; do
	grep -qx "$s" "$T/man.txt" || fail "the man page has no $s section"
done
opts=$("$ISCSIFS" --help | sed -n '/^Options/,/^$/p' | grep -oE '^  [a-z_]+' | tr -d ' ' | sort -u)
optsec=$(sed -n '/^OPTIONS/,/^SECRET FILE/p' "$T/man.txt")
exitsec=$(sed -n '/^EXIT STATUS/,/^ENVIRONMENT/p' "$T/man.txt")
for o in $opts; do
	grep -qE "(^|[ ,])$o([=, ]|$)" <<<"$optsec" ||
		fail "option $o of --help is not in the man page's OPTIONS"
done
for c in 0 1 2 3 4 5 6; do
	grep -qE "^       $c\b" <<<"$exitsec" || fail "exit code $c is not in the man page's EXIT STATUS"
done
grep -q 3260 "$T/man.txt" && grep -q 860 "$T/man.txt" || fail "the man page lacks the 3260/860 rule"
pass "man -l renders iscsifs.1 without warnings: every section, option and exit code"

# --- systemd-analyze verify
if command -v systemd-analyze >/dev/null 2>&1; then
	U=$T/units
	mkdir -p "$U"
	# the unit as installed, pointing at the binary under test
	sed "s|^ExecStart=$prefix/bin/iscsifs|ExecStart=$ISCSIFS|" \
		"$D$prefix/lib/systemd/system/iscsifs@.service" >"$U/iscsifs@.service"
	ln -s iscsifs@.service "$U/iscsifs@mnt-san.service"
	cp "$D$prefix/share/doc/iscsifs/examples/mnt-san.mount" "$U/"
	rc=0
	(cd "$U" && SYSTEMD_LOG_LEVEL=notice systemd-analyze verify --man=no \
		./iscsifs@mnt-san.service ./mnt-san.mount) >"$T/verify.out" 2>&1 || rc=$?
	((rc == 0)) && [[ ! -s $T/verify.out ]] ||
		fail "systemd-analyze verify: exit $rc: $(cat "$T/verify.out")"
	grep -q '^Type=notify$' "$U/iscsifs@.service" && grep -q -- "-f " "$U/iscsifs@.service" ||
		fail "iscsifs@.service is not Type=notify with iscsifs -f"
	log "systemd-analyze verify iscsifs@mnt-san.service mnt-san.mount: exit 0, no output"
	pass "systemd-analyze verify: the service template and the .mount example"
else
	log "systemd-analyze not installed: units not verified"
fi

# --- bash completion
if [[ -f /usr/share/bash-completion/bash_completion ]]; then
	comp=$D$comp/iscsifs
	comp_out=$(bash -c '
		source /usr/share/bash-completion/bash_completion
		source "$1"
		t() { COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
		      COMPREPLY=(); _iscsifs; echo "${COMPREPLY[*]}"; }
		echo "A:$(t iscsifs -o cache=w)"
		echo "B:$(t iscsifs -o ro,cache_s)"
		echo "C:$(t iscsifs s)"' _ "$comp" 2>&1)
	grep -qx 'A:cache=writeback cache=writethrough' <<<"$comp_out" &&
		grep -qx 'B:ro,cache_size=' <<<"$comp_out" && grep -qx 'C:stat' <<<"$comp_out" ||
		fail "bash completion: $comp_out"
	pass "bash completion: option values, the last item of an -o list, subcommands"
fi

# --- the Kubernetes Pod manifest
python3 - "$SRCDIR/contrib/container/pod.yaml" >"$T/pod.args" <<'PY' || fail "pod.yaml: see above"
import sys, yaml
docs = list(yaml.safe_load_all(open(sys.argv[1])))
assert len(docs) == 1 and docs[0]["kind"] == "Pod", "one Pod"
spec = docs[0]["spec"]
c = {x["name"]: x for x in spec["containers"]}
side, app = c["iscsifs"], c["app"]
vols = {v["name"]: v for v in spec["volumes"]}
assert "emptyDir" in vols["san"], "the shared volume is an emptyDir"
assert vols["chap"]["secret"]["defaultMode"] == 0o400, "secret volume mode %o" % vols["chap"]["secret"]["defaultMode"]
sm = {m["name"]: m for m in side["volumeMounts"]}
am = {m["name"]: m for m in app["volumeMounts"]}
assert sm["san"]["mountPropagation"] == "Bidirectional", "sidecar propagation"
assert am["san"]["mountPropagation"] in ("HostToContainer", "Bidirectional"), "app propagation"
assert side["securityContext"]["privileged"] is True, "Bidirectional needs privileged"
args = side["args"]
i = args.index("-o")
opts = args[i + 1]
pos = [a for j, a in enumerate(args) if j not in (i, i + 1)]
assert len(pos) == 2 and pos[0].startswith("iscsi://") and pos[1] == sm["san"]["mountPath"], pos
secret = [o.split("=", 1)[1] for o in opts.split(",") if o.startswith("secret_file=")]
assert secret and secret[0].startswith(sm["chap"]["mountPath"] + "/"), "secret_file in the Secret volume"
print(opts)
print(pos[0])
PY
opts=$(sed -n 1p "$T/pod.args")
url=$(sed -n 2p "$T/pod.args")
# The binary's own parser: every option accepted, so the only complaint left is the
# mountpoint that does not exist here.
expect_fail_msg "mountpoint $T/no-such-dir does not exist" "$ISCSIFS" -o "$opts" "$url" "$T/no-such-dir"
((EXPECT_RC == 2)) || fail "pod.yaml's options: exit $EXPECT_RC"
# and the check can fail: an option the binary does not know is reported first
expect_fail_msg "unknown option \"bogus\"" "$ISCSIFS" -o "$opts,bogus" "$url" "$T/no-such-dir"
pass "pod.yaml parses, shares the mount Bidirectional, secret 0400, options accepted by iscsifs: $opts"
