#!/bin/bash
# Proves the daemon reads no memory it does not own when the target sends malformed
# sense or Data-In (issue 9 §1, §2, §5), under valgrind memcheck: CHECK CONDITION with
# sense shorter than its length field, with no data segment, with response code 0 or
# key NO SENSE, and short, misplaced or excess Data-In, to READs and WRITEs and to
# READ CAPACITY. Any invalid read/write, use of uninitialised memory or definite leak
# fails the test, except those listed in valgrind-libiscsi.supp (errors wholly inside
# libiscsi 1.19 that iscsifs cannot prevent; each is documented there). Slow: suite
# 'valgrind', kept out of the sanitizer run (valgrind cannot run an ASan build).
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/lib_badtarget.sh"
requires python3 valgrind

if ldd "$ISCSIFS" 2>/dev/null | grep -q -e libasan -e libubsan; then
	skip "$ISCSIFS is a sanitizer build: valgrind cannot run it"
fi

M=$T/mnt
IMG=$T/lun1.img
SUPP=$SRCDIR/tests/integration/valgrind-libiscsi.supp
# valgrind makes the daemon 20-50 times slower: long timeouts, so none fires by accident
HOSTILE_CMD_TIMEOUT=30 HOSTILE_REPLACEMENT=30
HOSTILE_OPTS="cmd_timeout=30,replacement_timeout=30,noop_interval=10,noop_timeout=10,login_timeout=60,cache_size=16M"
HOSTILE_BOUND=$((30 + 30 + 60))
MOUNT_TIMEOUT=180

# under_valgrind: point ISCSIFS at a wrapper that execs the daemon under memcheck,
# one log per process in $T/vg.PID.log.
under_valgrind()
{
	local real=$ISCSIFS
	cat >"$T/iscsifs-vg" <<EOF
#!/bin/sh
exec valgrind --tool=memcheck --error-exitcode=99 --leak-check=full \\
	--errors-for-leak-kinds=definite --show-leak-kinds=definite --track-origins=yes \\
	--num-callers=30 --suppressions="$SUPP" --log-file="$T/vg.%p.log" "$real" "\$@"
EOF
	chmod +x "$T/iscsifs-vg"
	ISCSIFS=$T/iscsifs-vg
}

# vg_check WHAT: the valgrind logs hold no error; otherwise fail with the first one.
vg_check()
{
	local what=$1 f n errs=0 first=
	for f in "$T"/vg.*.log; do
		[[ -f $f ]] || continue
		n=$(sed -n 's/.*ERROR SUMMARY: \([0-9]*\) errors.*/\1/p' "$f" | tail -n 1)
		# A log without a summary is a fork that exec'd fusermount3 (not traced).
		[[ -n $n ]] || continue
		if ((n > 0)); then
			errs=$((errs + n))
			[[ -n $first ]] || first=$f
		fi
		log "$(basename "$f"): $(sed -n 's/^==[0-9]*== \(ERROR SUMMARY.*\)/\1/p' "$f" | tail -n 1)"
	done
	if ((errs > 0)); then
		echo "--- first valgrind errors of $first ---" >&2
		grep -v -e '^==[0-9]*== *$' "$first" | sed -n '/Invalid\|uninitialised\|definitely lost\|Mismatched\|Syscall param/,+24p' | head -n 80 >&2
		fail "$what: valgrind found $errs error(s) in the daemon (see above, and $first)"
	fi
}

# io_case SPEC OP: the daemon under valgrind, LUN 1 misbehaving with SPEC for OP.
io_case()
{
	local spec=$1 op=$2 out rc=0
	under_valgrind
	rm -f "$IMG"
	truncate -s 64M "$IMG"
	fill_random "$IMG"
	badtarget_start --lun "1=$IMG" --misbehave "$spec,op=$op" --start-off
	hostile_mount 1
	badtarget_misbehave on
	# 20 MiB: far from what the mount's probe reads (the first 4 MiB, the last 2 MiB),
	# so the READ reaches the target.
	if [[ $op == read ]]; then
		out=$(BT_IO_TIMEOUT=$((HOSTILE_BOUND + 60)) bt_io read "$M/lun1" $((20 << 20)) $((128 << 10)) --expect "$IMG")
	else
		out=$(BT_IO_TIMEOUT=$((HOSTILE_BOUND + 60)) bt_io write "$M/lun1" $((20 << 20)) $((128 << 10)) --pattern 2)
	fi
	log "$op while the target answers $spec: $out"
	(($(badtarget_counter "misbehaved.${spec%%:*}") > 0)) || fail "the target never applied $spec"
	badtarget_misbehave off
	UMOUNT_TIMEOUT=$((HOSTILE_BOUND + 60)) iscsifs_umount "$M" || rc=$?
	((rc != 124)) || fail "the daemon (under valgrind) did not exit within $((HOSTILE_BOUND + 60)) s of the unmount"
	badtarget_stop
	vg_check "$op answered $spec"
	pass "$op answered $spec: no memory error under valgrind (daemon exit $rc)"
}

# capacity_case SPEC OPS: the mount's READ CAPACITY answered SPEC.
capacity_case()
{
	local spec=$1 ops=$2 rc=0
	under_valgrind
	rm -f "$IMG"
	truncate -s 16M "$IMG"
	badtarget_start --lun "1=$IMG" --misbehave "$spec,op=$ops"
	TRY_MOUNT_TIMEOUT=180 iscsifs_try_mount "$(badtarget_url 1)" "$M" -o "$HOSTILE_OPTS" || rc=$?
	case $rc in
	0) UMOUNT_TIMEOUT=120 iscsifs_umount "$M" || true ;;
	124) fail "$ops answered $spec: neither mounted nor failed within 180 s" ;;
	esac
	badtarget_stop
	vg_check "READ CAPACITY ($ops) answered $spec"
	pass "READ CAPACITY ($ops) answered $spec: no memory error under valgrind"
}

hostile_dispatch "$@"
for spec in sense-short sense-empty badsense nosense; do
	hostile_case io_case "$spec" read
	hostile_case io_case "$spec" write
done
for spec in datain-short datain-offset datain-extra datain-dup-replace; do
	hostile_case io_case "$spec" read
done
hostile_case capacity_case sense-empty rc16+rc10
hostile_case capacity_case sense-short:4 rc16
hostile_summary
