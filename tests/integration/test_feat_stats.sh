#!/bin/bash
# Proves the statistics a user sees: .iscsifs/stats.json is valid JSON with one entry per
# session (logged-in) and per LUN, whose counters move as I/O is done (read bytes grow
# by what was read, cache hits on rereads, writes reach write-back and SCSI after
# fsync, nothing stays dirty, no errors; schema, version and latency histograms);
# .iscsifs/metrics is Prometheus text with the same numbers (iscsifs_cache_hits_total
# per LUN, HELP and TYPE for every family, a latency histogram per LUN and op);
# `iscsifs stat MNT` prints the table with the target and exits 0, `--watch` refreshes
# it with rates and ends when its reader goes away (`| head`), `--json` prints the same
# document; `iscsifs stat` of a directory that is no iscsifs mount fails with a message.
source "$(dirname "$0")/lib.sh"
requires python3

IQN=iqn.2026-11.org.iscsifs.test:stats
tgt_start
tgt_target 1 "$IQN"
tgt_sparse "$T/lun1.img" 64M
tgt_sparse "$T/lun2.img" 32M
tgt_lun 1 1 "$T/lun1.img"
tgt_lun 1 2 "$T/lun2.img" 4096
fill_random "$T/lun1.img"
M=$T/mnt
iscsifs_mount "$(tgt_url "$IQN")" "$M" -o cache_size=32M

cat >"$T/stats.py" <<'EOF'
# stats.py SNAPSHOT_OUT [PREV_SNAPSHOT [CHECKS...]]: parse stats.json, check its shape,
# save it; with PREV, check the deltas named by CHECKS (name=op=value, on LUN 1):
#   cache.read_bytes=ge=N   grew by at least N
#   cache.hits=gt=0         grew by more than 0
#   cache.dirty_bytes=abs_eq=0  is now 0
import json, os, sys

mnt = os.environ["M"]
with open(os.path.join(mnt, ".iscsifs/stats.json")) as f:
    text = f.read()
try:
    d = json.loads(text)
except ValueError as e:
    print("stats.json is not JSON: %s\n%s" % (e, text))
    sys.exit(1)
bad = []
def need(cond, what):
    if not cond:
        bad.append(what)

iqn = os.environ["IQN"]
need(d.get("schema") == 1, "schema %r, want 1" % d.get("schema"))
need(d.get("version") == os.environ["VERSION"], "version %r, want %r (iscsifs --version)" % (d.get("version"), os.environ["VERSION"]))
need(d.get("mountpoint") == mnt, "mountpoint %r" % d.get("mountpoint"))
bounds = d.get("latency_buckets_us", [])
need(bounds == [100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000,
                500000, 1000000, 2500000, 5000000, 10000000], "latency_buckets_us %r" % bounds)
need(isinstance(d.get("uptime_s"), (int, float)) and d["uptime_s"] >= 0, "uptime_s")
sess = d.get("sessions", [])
need(len(sess) == 1, "one session, got %d" % len(sess))
for s in sess:
    need(s.get("target") == iqn, "session target %r" % s.get("target"))
    need(s.get("state") == "logged-in", "session state %r" % s.get("state"))
    need(s.get("reconnects") == 0 and s.get("timeouts") == 0, "session reconnects/timeouts %r" % s)
    need(isinstance(s.get("commands"), int) and s["commands"] > 0, "session commands %r" % s.get("commands"))
luns = {l["lun"]: l for l in d.get("luns", [])}
need(sorted(luns) == [1, 2], "luns %r" % sorted(luns))
for n, size, bs in ((1, 64 << 20, 512), (2, 32 << 20, 4096)):
    l = luns.get(n)
    if not l:
        continue
    need(l["target"] == iqn and l["file"] == "lun%d" % n, "lun %d target/file %r" % (n, l))
    need(l["size"] == size and l["block_size"] == bs, "lun %d size/block_size" % n)
    c, s = l["cache"], l["scsi"]
    for k, v in list(c.items()) + list(s.items()):
        if k == "latency":
            continue
        need(isinstance(v, (int, float)) and v >= 0, "lun %d counter %s = %r" % (n, k, v))
    # latency histograms: read, write, flush; cumulative buckets, one per bound + Inf
    for op in ("read", "write", "flush"):
        h = s.get("latency", {}).get(op)
        if not isinstance(h, dict):
            need(False, "lun %d scsi.latency.%s missing" % (n, op))
            continue
        b = h.get("buckets", [])
        need(len(b) == len(bounds) + 1, "lun %d latency.%s: %d buckets for %d bounds" % (n, op, len(b), len(bounds)))
        need(all(x <= y for x, y in zip(b, b[1:])), "lun %d latency.%s buckets not cumulative: %r" % (n, op, b))
        need(b and b[-1] == h.get("count"), "lun %d latency.%s: +Inf bucket %r != count %r" % (n, op, b[-1:], h.get("count")))
        need(isinstance(h.get("sum_us"), int) and h["sum_us"] >= 0, "lun %d latency.%s sum_us" % (n, op))
        if op in ("read", "write"):
            need(h.get("count") == s[op + "s"], "lun %d latency.%s count %r != scsi.%ss %r" % (n, op, h.get("count"), op, s[op + "s"]))
    need(c["cached_bytes"] <= 32 << 20, "lun %d cached_bytes %d > cache_size" % (n, c["cached_bytes"]))
    need(c["dirty_bytes"] <= c["cached_bytes"], "lun %d dirty > cached" % n)
    need(c["fetch_bytes"] <= s["read_bytes"], "lun %d fetch_bytes %d > scsi read_bytes %d" % (n, c["fetch_bytes"], s["read_bytes"]))
    need(s["errors"] == 0 and c["write_errors"] == 0, "lun %d errors %d/%d" % (n, s["errors"], c["write_errors"]))
with open(sys.argv[1], "w") as f:
    json.dump(d, f)
if len(sys.argv) > 2:
    prev = {l["lun"]: l for l in json.load(open(sys.argv[2]))["luns"]}
    for chk in sys.argv[3:]:
        name, op, val = chk.split("=")
        path = name.split(".")
        now, before = luns[1], prev[1]
        for k in path:
            now, before = now[k], before[k]
        val = int(val)
        ok = {"ge": now - before >= val, "gt": now - before > val, "eq": now - before == val,
              "abs_eq": now == val}[op]
        need(ok, "lun 1 %s: %d -> %d (delta %d), want %s %s %d" % (
            name, before, now, now - before, "value" if op == "abs_eq" else "delta", op, val))
if bad:
    print("stats.json checks failed:\n  " + "\n  ".join(bad) + "\n--- stats.json ---\n" + text)
    sys.exit(1)
EOF
VERSION=$("$ISCSIFS" --version | awk '{ print $2 }')
export M IQN VERSION
snap() { python3 "$T/stats.py" "$@" || fail "see above"; }

snap "$T/s0.json"
pass "stats.json: valid JSON, one logged-in session, LUNs 1 and 2 with sane counters"

# Cold reads (O_DIRECT, so that every read reaches the daemon, not the page cache).
dd if="$M/lun1" of="$T/read1" bs=64K skip=256 count=32 iflag=direct status=none
check_cmp "$T/read1" "$T/lun1.img" 2097152 0 $((256 * 65536))
snap "$T/s1.json" "$T/s0.json" cache.read_bytes=ge=2097152 cache.misses=gt=0 \
	scsi.read_bytes=ge=2097152 scsi.reads=gt=0 scsi.latency.read.count=gt=0
# The same range again: served from the cache.
dd if="$M/lun1" of=/dev/null bs=64K skip=256 count=32 iflag=direct status=none
snap "$T/s2.json" "$T/s1.json" cache.read_bytes=ge=2097152 cache.hits=gt=0 \
	cache.misses=eq=0 scsi.read_bytes=eq=0
pass "reads: read_bytes grows by what was read; a reread is all hits, no SCSI reads"

# Writes: after fsync they have been written back and sent as SCSI WRITEs.
head -c 1048576 /dev/urandom >"$T/w"
dd if="$T/w" of="$M/lun1" bs=64K seek=512 conv=notrunc,fsync status=none
check_cmp "$T/lun1.img" "$T/w" 1048576 $((512 * 65536)) 0
snap "$T/s3.json" "$T/s2.json" cache.write_bytes=ge=1048576 cache.writeback_bytes=ge=1048576 \
	scsi.write_bytes=ge=1048576 scsi.writes=gt=0 cache.dirty_bytes=abs_eq=0 \
	scsi.latency.write.count=gt=0 scsi.latency.flush.count=gt=0
pass "writes: write_bytes, writeback_bytes and SCSI write_bytes grow; nothing dirty after fsync"

# --- Prometheus text
metrics=$(cat "$M/.iscsifs/metrics")
bad=$(grep -vE '^(# (HELP|TYPE) [a-z_]+ .*|[a-z_]+(\{[a-z_]+="[^"]*"(,[a-z_]+="[^"]*")*\})? -?[0-9.]+(e[-+]?[0-9]+)?)$' <<<"$metrics" || true)
[[ -z $bad ]] || fail "lines of .iscsifs/metrics that are not Prometheus text:
$bad"
for name in $(sed -n 's/^\([a-z_]*\)[{ ].*/\1/p' <<<"$metrics" | sort -u); do
	base=$name
	if [[ $name =~ ^(.*)_(bucket|sum|count)$ ]] &&
		grep -q "^# TYPE ${BASH_REMATCH[1]} histogram$" <<<"$metrics"; then
		base=${BASH_REMATCH[1]}
	fi
	grep -q "^# TYPE $base " <<<"$metrics" || fail "metric $name has no # TYPE line"
	grep -q "^# HELP $base " <<<"$metrics" || fail "metric $name has no # HELP line"
done
for op in read write flush; do
	for n in 1 2; do
		grep -qE "^iscsifs_scsi_latency_seconds_bucket\{target=\"$IQN\",lun=\"$n\",op=\"$op\",le=\"\+Inf\"\} [0-9]+$" <<<"$metrics" ||
			fail "no +Inf bucket of the $op latency histogram of LUN $n:
$(grep latency <<<"$metrics")"
	done
done
for n in 1 2; do
	grep -qE "^iscsifs_cache_hits_total\{target=\"$IQN\",lun=\"$n\"\} [0-9]+$" <<<"$metrics" ||
		fail "no iscsifs_cache_hits_total line for LUN $n:
$(grep cache_hits <<<"$metrics")"
done
grep -qxF "iscsifs_session_up{target=\"$IQN\",session=\"0\"} 1" <<<"$metrics" ||
	fail "iscsifs_session_up of session 0 is not 1:
$(grep session_up <<<"$metrics")"
# Same numbers as stats.json (no I/O in between).
hits=$(sed -n "s/^iscsifs_cache_hits_total{target=\"$IQN\",lun=\"1\"} //p" <<<"$metrics")
json_hits=$(python3 -c 'import json, sys; print([l for l in json.load(open(sys.argv[1]))["luns"] if l["lun"] == 1][0]["cache"]["hits"])' "$M/.iscsifs/stats.json")
check_eq "cache hits of LUN 1 in metrics vs stats.json" "$hits" "$json_hits"
((hits > 0)) || fail "iscsifs_cache_hits_total of LUN 1 is $hits after rereads"
pass ".iscsifs/metrics: Prometheus text, iscsifs_cache_hits_total per LUN, same as stats.json"

# --- iscsifs stat
out=$(timeout -k 5 30 "$ISCSIFS" stat "$M" 2>&1) || fail "iscsifs stat $M exited $?: $out"
grep -qE "^iscsifs on $M" <<<"$out" || fail "iscsifs stat: no 'iscsifs on $M' title:
$out"
grep -qE "^$IQN +0 +up +0 +0$" <<<"$out" || fail "iscsifs stat: no session row for $IQN:
$out"
for n in 1 2; do
	grep -qE "^$IQN +$n +([0-9.]+|-) +[0-9.]+ +[0-9.]+ +[0-9.]+ +[0-9.]+ +0$" <<<"$out" ||
		fail "iscsifs stat: no LUN $n row for $IQN:
$out"
done
hitpct=$(awk -v t="$IQN" '$1 == t && $2 == 1 && NF == 8 { print $3 }' <<<"$out")
[[ $hitpct =~ ^[0-9]+\.[0-9]$ ]] && awk -v h="$hitpct" 'BEGIN { exit !(h > 0) }' ||
	fail "iscsifs stat: HIT% of LUN 1 is '$hitpct', want > 0:
$out"
pass "iscsifs stat: table with the target, its session and its LUNs; exit 0"

# --watch: refreshes every second and shows rates; ends on a signal.
rc=0
timeout -s INT 2.5 "$ISCSIFS" stat "$M" --watch >"$T/watch.out" 2>&1 </dev/null || rc=$?
((rc == 124 || rc == 130)) || fail "iscsifs stat --watch: exit $rc before the timeout:
$(cat -v "$T/watch.out")"
frames=$(grep -c "^iscsifs on $M" <(tr '\033' '\n' <"$T/watch.out" | sed 's/^\[[0-9;]*[A-Za-z]//') || true)
((frames >= 2)) || fail "iscsifs stat --watch: $frames frames in 2.5 s, want >= 2:
$(cat -v "$T/watch.out")"
grep -q 'READ MB/s' "$T/watch.out" || fail "iscsifs stat --watch shows no rates:
$(cat -v "$T/watch.out")"
pass "iscsifs stat --watch: $frames frames with rates in 2.5 s"

# --json: the stats.json document; --watch ends when its reader goes away (EPIPE)
timeout -k 5 30 "$ISCSIFS" stat --json "$M" >"$T/stat.json" || fail "iscsifs stat --json exited $?"
python3 - "$T/stat.json" "$IQN" <<'PY' || fail "iscsifs stat --json: see above"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["schema"] == 1, d["schema"]
assert sorted(l["lun"] for l in d["luns"]) == [1, 2], d["luns"]
assert all(l["target"] == sys.argv[2] for l in d["luns"])
PY
rc=0
timeout -k 5 20 "$ISCSIFS" stat "$M" --watch --json | head -n 2 >"$T/watch.jsonl" || rc=${PIPESTATUS[0]}
((rc == 0)) || fail "iscsifs stat --watch --json | head -n 2: stat exited $rc"
python3 -c 'import json, sys; [json.loads(l) for l in open(sys.argv[1])]; assert len(open(sys.argv[1]).readlines()) == 2' "$T/watch.jsonl" ||
	fail "iscsifs stat --watch --json: not one JSON document per line: $(head -c 300 "$T/watch.jsonl")"
start=$SECONDS
rc=0
timeout -k 5 20 "$ISCSIFS" stat "$M" --watch | head -n 1 >/dev/null || rc=${PIPESTATUS[0]}
((rc == 0)) || fail "iscsifs stat --watch | head -n 1: stat exited $rc (124: it never noticed the closed pipe)"
((SECONDS - start <= 5)) || fail "iscsifs stat --watch | head -n 1 took $((SECONDS - start)) s"
pass "iscsifs stat --json is the stats.json document (--watch: one per line); stat --watch | head exits 0 at once"

# --- not an iscsifs mount
expect_fail_msg "not an iscsifs mount" "$ISCSIFS" stat /tmp
expect_fail_msg "" "$ISCSIFS" stat "$T/nonexistent"
iscsifs_umount_ok "$M"
expect_fail_msg "not an iscsifs mount" "$ISCSIFS" stat "$M"
pass "iscsifs stat of a directory that is no iscsifs mount fails with a message"
