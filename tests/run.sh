#!/bin/bash
# tests/run.sh — the one test command (CI runs it through .ci/run).
#
# Installs missing Debian packages, builds iscsifs twice (build/ with -Werror, and
# build-asan/ with ASan+UBSan), runs every test of build/ and the 'core' and 'hostile'
# suites (unit tests, core integration tests and the misbehaving-target tests except
# the valgrind one, against the sanitized daemon) of build-asan/, and ends
# with one line: "N passed, N failed[, N skipped]". Exits non-zero when anything failed.
#
#   tests/run.sh            everything (a few minutes on 2 cores)
#   tests/run.sh --quick    skip the sanitizer build and its tests
#   MESON_TEST_ARGS='--suite unit' tests/run.sh   extra arguments for both `meson test`
set -uo pipefail

usage()
{
	sed -n '2,/^set /{/^#/s/^# \{0,1\}//p}' "$0"
}

QUICK=0
for arg in "$@"; do
	case $arg in
	--quick) QUICK=1 ;;
	-h | --help)
		usage
		exit 0
		;;
	*)
		echo "run.sh: unknown argument '$arg' (try --help)" >&2
		exit 2
		;;
	esac
done

cd "$(dirname "$0")/.." || exit 1
ROOT=$PWD
# shellcheck source=tests/deps.sh
source tests/deps.sh

JOBS=$(nproc 2>/dev/null || echo 2)
((JOBS <= 2)) || JOBS=2
read -r -a EXTRA_ARGS <<<"${MESON_TEST_ARGS:-}"
# Sanitizers: stop at the first report, with a stack; callers may override.
export ASAN_OPTIONS=${ASAN_OPTIONS:-halt_on_error=1:abort_on_error=0:print_stacktrace=1:detect_leaks=1:detect_stack_use_after_return=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}

PASSED=0 FAILED=0 SKIPPED=0
FAILED_RUNS=()
START=$SECONDS

section() { printf '\n==== %s (%ds)\n' "$*" $((SECONDS - START)); }

# finish: the closing line, and the exit status.
finish()
{
	local line="$PASSED passed, $FAILED failed"
	((SKIPPED == 0)) || line+=", $SKIPPED skipped"
	if ((FAILED)); then
		printf '\nFailed:\n'
		printf '  %s\n' "${FAILED_RUNS[@]}"
	fi
	printf '\n%s\n' "$line"
	((FAILED == 0))
	exit
}

build_failed()
{
	echo "run.sh: $*" >&2
	PASSED=0 FAILED=1 SKIPPED=0
	FAILED_RUNS=("$*")
	finish
}

# setup DIR ARGS...: meson setup, or --reconfigure when DIR exists, or --wipe when
# reconfiguring fails (e.g. a build dir left by another meson version).
setup()
{
	local dir=$1
	shift
	if [[ -f $dir/build.ninja || -d $dir/meson-private ]]; then
		meson setup --reconfigure "$dir" "$@" >"$dir.setup.log" 2>&1 ||
			meson setup --wipe "$dir" "$@" >"$dir.setup.log" 2>&1
	else
		meson setup "$dir" "$@" >"$dir.setup.log" 2>&1
	fi || {
		tail -n 40 "$dir.setup.log" >&2
		return 1
	}
	rm -f "$dir.setup.log"
}

build()
{
	local dir=$1
	shift
	section "build $dir ($*)"
	setup "$dir" "$@" || return 1
	ninja -C "$dir" -j "$JOBS" || return 1
}

# run_tests LABEL DIR ARGS...: meson test; adds its summary to the totals.
run_tests()
{
	local label=$1 dir=$2 log rc=0 ok xfail fail upass skip tout
	shift 2
	log=$dir/meson-logs/run-sh.txt
	section "meson test -C $dir $* ${EXTRA_ARGS[*]}"
	meson test -C "$dir" --num-processes "$JOBS" --print-errorlogs "$@" "${EXTRA_ARGS[@]}" \
		2>&1 | tee "$log"
	rc=${PIPESTATUS[0]}
	# Meson's summary block: "Ok:   12", "Expected Fail:  0", "Fail:  1", ...
	count() { awk -v k="$1" '{ l = $0; sub(/:.*/, "", l) } l == k { n = $NF } END { print n + 0 }' "$log"; }
	ok=$(count Ok) xfail=$(count 'Expected Fail') fail=$(count Fail)
	upass=$(count 'Unexpected Pass') skip=$(count Skipped) tout=$(count Timeout)
	if ! grep -q '^Ok:' "$log"; then
		if grep -q 'No suitable tests defined' "$log"; then
			echo "run.sh: $label: no tests selected" >&2
			return 0
		fi
		echo "run.sh: $label: meson test printed no summary (exit $rc)" >&2
		fail=1
	fi
	PASSED=$((PASSED + ok + xfail))
	FAILED=$((FAILED + fail + upass + tout))
	SKIPPED=$((SKIPPED + skip))
	if ((fail + upass + tout)); then
		# The names of the failing tests, and where their full logs are.
		FAILED_RUNS+=("$label: $(awk '/^ *[0-9]+\/[0-9]+ / {
				for (i = 3; i <= NF; i++)
					if ($i ~ /^(FAIL|TIMEOUT|UNEXPECTEDPASS)$/) {
						name = $2; for (j = 3; j < i; j++) name = name " " $j
						if (!seen[name]++) printf "%s%s", (n++ ? ", " : ""), name
						break
					}
			}' "$log")")
		echo "run.sh: $label: full logs in $dir/meson-logs/testlog.txt" >&2
	elif ((rc != 0)); then
		echo "run.sh: $label: meson test exited $rc with no failing test" >&2
		FAILED=$((FAILED + 1))
		FAILED_RUNS+=("$label (exit $rc)")
	fi
	return 0
}

section "dependencies"
deps_install || build_failed "could not install the Debian packages the tests need"
# promtool for test_eco_metrics (a test that cannot have it skips that check)
PROMTOOL=$(deps_promtool) && export PROMTOOL || echo "run.sh: no promtool (prometheus .deb not available)" >&2

build build -Dwerror=true || build_failed "build failed (meson setup build / ninja -C build)"
if ((!QUICK)); then
	build build-asan -Db_sanitize=address,undefined -Db_lundef=false -Dwerror=true ||
		build_failed "sanitizer build failed (build-asan)"
fi

run_tests build build
if ((!QUICK)); then
	# The hostile-target tests too (issue 9), but not those under valgrind.
	run_tests build-asan build-asan --suite core --suite hostile --no-suite valgrind
fi

# Leave no test tgtd or mount behind, even after a test was killed by its timeout.
bash "$ROOT/tests/sweep-stale.sh" || true
section "done"
finish
