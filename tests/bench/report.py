#!/usr/bin/env python3
"""Turn the raw output of tests/bench/run.sh into results.md, results.json and bench.png.

Standard library only.  Two subcommands:

  report.py spread A.json B.json
      Print the relative difference of the two fio runs' IOPS, |a-b|/max(a,b), and exit
      0 when it is at most NOISE_LIMIT, 1 when it is larger (run.sh then runs a third
      time and the median of the three is used), 2 when a run failed.

  report.py build RAWDIR OUTDIR
      Read RAWDIR/meta.tsv (key<TAB>value lines written by run.sh), the fio JSON files
      RAWDIR/<system>-<job>-<n>.json and the iscsi-perf logs RAWDIR/iscsi-perf-<name>.txt;
      write OUTDIR/results.md, OUTDIR/results.json, OUTDIR/bench.png (through gnuplot).
"""
import json
import math
import os
import re
import subprocess
import sys

NOISE_LIMIT = 0.25
MIB = 1024 * 1024
RSS_LIMIT_MIB = 256 + 64          # iscsifs default cache_size + 64 MiB (issue 12)

# id, long label, short label (chart), goal for iscsifs/qsd.  The order is the run order.
JOBS = [
    ("seqread",   "1. seq read 1 MiB",                         "seq rd 1M",       1.5),
    ("seqwrite",  "2. seq write 1 MiB",                        "seq wr 1M",       1.5),
    ("randread1", "3. rand read 4 KiB, 1 job",                 "rand rd 4K",      1.0),
    ("randread4", "4. rand read 4 KiB, 4 jobs",                "rand rd 4K x4",   1.2),
    ("randwrite1", "5. rand write 4 KiB, 1 job",               "rand wr 4K",      2.0),
    ("hotread",   "6. hot rand read 4 KiB O_DIRECT, 64 MiB",   "hot rd 4K DIO",   2.0),
    ("randrw4",   "7. randrw 70/30 4 KiB, 4 jobs",             "randrw 70/30 x4", 1.5),
]
HOT_REF_GOAL = 0.8                 # iscsifs hot read / RAM-backed FUSE reference

# Parts B, C, D (beyond the cache; sessions=4; four LUNs at once):
# id, long label, short label, ours, theirs, goal vs theirs (None: shown, no goal),
# iscsi-perf ceiling name and goal vs it (or None), RAM reference system (or None).
JOBS_B = [
    ("b_rand1", "B1. cold rand read 4 KiB, psync QD1", "B1 rand rd QD1",
     "ifs2", "qsd2", 1.1, ("rand4k-qd1-2g", 0.8), "ram2"),
    ("b_rand32", "B2. rand read 4 KiB O_DIRECT, libaio QD32", "B2 rand rd QD32",
     "ifs2", "qsd2", 1.2, ("rand4k-qd32-2g", 0.85), "ram2"),
    ("b_wrand32", "B3. rand write 4 KiB O_DIRECT, libaio QD32", "B3 rand wr QD32",
     "ifs2", "qsd2", 1.5, None, None),
    ("b_seq128", "B4. seq read 128 KiB O_DIRECT, QD1", "B4 seq rd 128K",
     "ifs2", "qsd2", None, None, None),
    ("b_wrand1", "B5. rand write 4 KiB buffered, QD1", "B5 rand wr buf",
     "ifs2", "qsd2", 2.0, None, None),
    ("b_seqwrite", "B6. seq write 1 MiB", "B6 seq wr 1M",
     "ifs2", "qsd2", 1.5, None, None),
    ("b_rand1", "C1. = B1 at sessions=4", "C1 B1 s=4", "ifs2s4", "qsd2", None, None, None),
    ("b_rand32", "C2. = B2 at sessions=4", "C2 B2 s=4", "ifs2s4", "qsd2", None, None, None),
    ("b_wrand32", "C3. = B3 at sessions=4", "C3 B3 s=4", "ifs2s4", "qsd2", None, None, None),
    ("b_seq128", "C4. = B4 at sessions=4", "C4 B4 s=4", "ifs2s4", "qsd2", None, None, None),
    ("d_par4", "D1. four LUNs at once: rand read 4 KiB O_DIRECT QD8 each", "D1 4 LUNs",
     "ifs4", "qsd4", None, None, None),
]
SYSTEMS = ("qsd", "iscsifs", "ramref", "qsd2", "ram2", "ifs2", "ifs2s4", "qsd4", "ifs4")


def fio_numbers(path):
    """(iops, bytes/s, error) of one fio JSON output; reads and writes are summed."""
    try:
        with open(path) as f:
            text = f.read()
        # fio may print warnings before the JSON document; start at the first brace.
        doc = json.loads(text[text.index("{"):])
        job = doc["jobs"][0]
    except (OSError, ValueError, KeyError, IndexError) as e:
        return None, None, "unreadable fio output %s: %s" % (os.path.basename(path), e)
    iops = job["read"]["iops"] + job["write"]["iops"]
    bw = job["read"]["bw_bytes"] + job["write"]["bw_bytes"]
    err = job.get("error", 0)
    if err:
        return iops, bw, "fio error %d (%s)" % (err, os.path.basename(path))
    if iops <= 0:
        return iops, bw, "no I/O completed (%s)" % os.path.basename(path)
    return iops, bw, None


def spread(a, b):
    hi = max(a, b)
    return abs(a - b) / hi if hi > 0 else 0.0


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2.0


def cmd_spread(a, b):
    ia, _, ea = fio_numbers(a)
    ib, _, eb = fio_numbers(b)
    if ea or eb:
        print("error: %s" % (ea or eb))
        return 2
    s = spread(ia, ib)
    print("%.3f" % s)
    return 0 if s <= NOISE_LIMIT else 1


def read_meta(rawdir):
    meta = {}
    path = os.path.join(rawdir, "meta.tsv")
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                line = line.rstrip("\n")
                if "\t" in line:
                    k, v = line.split("\t", 1)
                    meta[k] = v
    return meta


def collect(rawdir, system, job):
    """Combined result of one job on one system, or None when it was not run."""
    runs = []
    for n in (1, 2, 3):
        p = os.path.join(rawdir, "%s-%s-%d.json" % (system, job, n))
        if os.path.exists(p):
            runs.append(p)
    if not runs:
        return None
    res = {"runs": [], "rerun": len(runs) > 2, "error": None}
    for p in runs:
        iops, bw, err = fio_numbers(p)
        res["runs"].append({"file": os.path.basename(p), "iops": iops, "bw_bytes": bw})
        if err and not res["error"]:
            res["error"] = err
    if res["error"]:
        res["iops"] = res["bw_bytes"] = None
        return res
    iops = [r["iops"] for r in res["runs"]]
    bws = [r["bw_bytes"] for r in res["runs"]]
    if len(runs) >= 2:
        res["halves_spread"] = round(spread(iops[0], iops[1]), 4)
    # Two halves: their mean (= the rate over the whole runtime).  Three: the median.
    res["iops"] = median(iops) if len(iops) != 2 else sum(iops) / 2.0
    res["bw_bytes"] = median(bws) if len(bws) != 2 else sum(bws) / 2.0
    return res


def parse_iscsi_perf(path):
    try:
        with open(path, errors="replace") as f:
            text = f.read()
    except OSError:
        return None
    m = re.findall(r"iops average (\d+) \((\d+) MB/s\)", text)
    size = re.search(r"fixed transfer size of (\d+) blocks \((\d+) byte\)", text, re.I)
    if not m or not size:
        err = text.strip().splitlines()[-1] if text.strip() else "no output"
        return {"error": err[:200]}
    iops = int(m[-1][0])
    xfer = int(size.group(2))
    return {"iops": iops, "bw_bytes": iops * xfer, "transfer_bytes": xfer}


def fmt_iops(x):
    if x is None:
        return "–"
    return "%.0f" % x if x >= 100 else "%.1f" % x


def fmt_mb(bw):
    return "–" if bw is None else "%.1f" % (bw / 1e6)


def fmt_ratio(r):
    return "–" if r is None else "%.2f" % r


def ratio(a, b):
    if not a or not b or a.get("iops") is None or b.get("iops") is None or b["iops"] <= 0:
        return None
    return a["iops"] / b["iops"]


def build(rawdir, outdir):
    meta = read_meta(rawdir)
    results = {s: {} for s in SYSTEMS}
    for s in SYSTEMS:
        for jid in [j[0] for j in JOBS] + [j[0] for j in JOBS_B]:
            r = collect(rawdir, s, jid)
            if r is not None:
                results[s][jid] = r

    rows = []          # for the markdown table and the chart
    reruns = []
    errors = []
    met_count = 0
    goal_count = 0
    for jid, label, short, goal in JOBS:
        q = results["qsd"].get(jid)
        o = results["iscsifs"].get(jid)
        rt = ratio(o, q)
        rows.append({"id": jid, "label": label, "short": short, "goal": goal,
                     "qsd": q, "ours": o, "ratio": rt, "ref": False})
        if jid == "hotread":
            ref = results["ramref"].get(jid)
            rows.append({"id": "hotread_vs_ref", "short": "hot rd vs RAM ref",
                         "label": "6b. hot rand read vs RAM-backed FUSE ref †",
                         "goal": HOT_REF_GOAL, "qsd": ref, "ours": o,
                         "ratio": ratio(o, ref), "ref": True})
    for row in rows:
        if row["ratio"] is not None:
            goal_count += 1
            row["met"] = row["ratio"] >= row["goal"]
            met_count += row["met"]
        else:
            row["met"] = None
        job_id = row["id"].replace("_vs_ref", "")
        for who, r in (("ramref" if row["ref"] else "qsd", row["qsd"]), ("iscsifs", row["ours"])):
            if r and r.get("rerun") and (who, job_id) not in reruns:
                reruns.append((who, job_id))
            msg = "%s / %s: %s" % (who, job_id, r.get("error")) if r else None
            if r and r.get("error") and msg not in errors:
                errors.append(msg)

    def cell(r):
        if r is None:
            return "–", "–"
        if r.get("error"):
            return "ERR", "ERR"
        mark = " ¹" if r.get("rerun") else ""
        return fmt_iops(r["iops"]) + mark, fmt_mb(r["bw_bytes"])

    L = []
    L.append("# iscsifs benchmark results")
    L.append("")
    L.append("%s; %s s per job (two halves of %s ms + 1 s ramp each)%s; LUN: tgtd on 127.0.0.1, "
             "1 GiB file on /dev/shm, 256 MiB region at offset 0; fio psync; page caches "
             "dropped before every fio run; mounts: %s; CPUs: %s." % (
                 meta.get("date", "?"), meta.get("runtime", "?"), meta.get("half_ms", "?"),
                 " (--quick)" if meta.get("quick") == "1" else "",
                 meta.get("mount_policy", "one fresh mount per system"),
                 meta.get("cpu_policy", "?")))
    L.append("")
    L.append("| job | qsd IOPS | qsd MB/s | iscsifs IOPS | iscsifs MB/s | ours/qsd | goal | met? |")
    L.append("|---|---:|---:|---:|---:|---:|---:|:---:|")
    for row in rows:
        qi, qb = cell(row["qsd"])
        oi, ob = cell(row["ours"])
        met = "n/a" if row["met"] is None else ("yes" if row["met"] else "**no**")
        L.append("| %s | %s | %s | %s | %s | %s | ≥%.1f | %s |" % (
            row["label"], qi, qb, oi, ob, fmt_ratio(row["ratio"]), row["goal"], met))
    L.append("")
    L.append("† row 6b: the \"qsd\" columns hold the RAM-backed FUSE reference (qemu-storage-daemon "
             "exporting a /dev/shm file, driver=file, cache.direct=off, aio=threads) on the same "
             "hot-read job; the ratio is iscsifs / reference.")
    if reruns:
        L.append("¹ the two halves differed by more than %d%%; the job was run a third time and "
                 "the median of the three runs is shown: %s." % (
                     NOISE_LIMIT * 100, ", ".join("%s %s" % (w, j) for w, j in reruns)))
    else:
        L.append("¹ no job needed a re-run (all halves within %d%% of each other)." % (NOISE_LIMIT * 100))
    L.append("MB/s = 10^6 bytes/s. IOPS of mixed jobs = reads + writes. Ratios are of IOPS "
             "(equal block sizes, so equal to the throughput ratio).")
    if goal_count:
        L.append("")
        L.append("**Goals met: %d of %d.**" % (met_count, goal_count))
    for who in ("qsd", "ramref", "iscsifs"):
        if meta.get(who + "_note"):
            L.append("")
            L.append("Note: %s %s" % (who, meta[who + "_note"]))
    for e in errors:
        L.append("")
        L.append("Error: %s" % e)

    # parts B, C, D
    perf = {}
    for name in ("rand4k-qd1", "rand4k-qd32", "seq1m-qd8", "rand4k-qd1-2g", "rand4k-qd32-2g"):
        p = parse_iscsi_perf(os.path.join(rawdir, "iscsi-perf-%s.txt" % name))
        if p is not None:
            perf[name] = p
    rows_b = []
    for jid, label, short, ours_sys, their_sys, goal, ceil, ram_sys in JOBS_B:
        o = results[ours_sys].get(jid)
        q = results[their_sys].get(jid)
        if o is None and q is None:
            continue
        row = {"id": "%s:%s" % (ours_sys, jid), "label": label, "short": short, "goal": goal,
               "qsd": q, "ours": o, "ratio": ratio(o, q), "ref": False, "met": None}
        if goal is not None and row["ratio"] is not None:
            row["met"] = row["ratio"] >= goal
            goal_count += 1
            met_count += row["met"]
        if ceil:
            pc = perf.get(ceil[0])
            row["ceiling"] = pc
            row["ceiling_goal"] = ceil[1]
            row["ceiling_ratio"] = ratio(o, pc) if pc and "iops" in pc else None
            if row["ceiling_ratio"] is not None:
                row["ceiling_met"] = row["ceiling_ratio"] >= ceil[1]
                goal_count += 1
                met_count += row["ceiling_met"]
        if ram_sys:
            row["ram"] = results[ram_sys].get(jid)
            row["ram_ratio"] = ratio(o, row["ram"])
        for who, r in ((their_sys, q), (ours_sys, o)):
            if r and r.get("rerun") and (who, jid) not in reruns:
                reruns.append((who, jid))
            if r and r.get("error"):
                errors.append("%s / %s: %s" % (who, jid, r["error"]))
        rows_b.append(row)
    if rows_b:
        L.append("")
        L.append("## Beyond the cache (parts B, C, D)")
        L.append("")
        L.append("tgtd LUN 2: 2 GiB of random data on /dev/shm, eight times iscsifs's default "
                 "cache_size (256 MiB); fio over the whole LUN; iscsifs mounted afresh before "
                 "every run (an empty cache), default options unless said; qsd as above. "
                 "Ceilings in the same run: iscsi-perf (libiscsi, no FUSE) on LUN 2, and the "
                 "RAM-backed FUSE reference (qsd's FUSE export of tgtd's own backing file). "
                 "Part D: LUNs 3-6 (1 GiB each) of one mount / one qsd with four exports.")
        L.append("")
        L.append("| job | qsd IOPS | iscsifs IOPS | ours/qsd | goal | met? | ceiling IOPS | ours/ceiling | goal | met? | RAM ref IOPS | ours/RAM |")
        L.append("|---|---:|---:|---:|---:|:---:|---:|---:|---:|:---:|---:|---:|")
        for row in rows_b:
            qi, _ = cell(row["qsd"])
            oi, _ = cell(row["ours"])
            goal = "–" if row["goal"] is None else "≥%.1f" % row["goal"]
            met = "n/a" if row["met"] is None else ("yes" if row["met"] else "**no**")
            ce = row.get("ceiling")
            ci = "–" if not ce else (fmt_iops(ce["iops"]) if "iops" in ce else "ERR")
            cg = "–" if row.get("ceiling_goal") is None else "≥%.2f" % row["ceiling_goal"]
            cm = "n/a" if row.get("ceiling_met") is None else ("yes" if row["ceiling_met"] else "**no**")
            ri, _ = cell(row.get("ram")) if "ram" in row else ("–", "–")
            L.append("| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
                row["label"], qi, oi, fmt_ratio(row["ratio"]), goal, met, ci,
                fmt_ratio(row.get("ceiling_ratio")), cg, cm, ri, fmt_ratio(row.get("ram_ratio"))))
        L.append("")
        L.append("**Goals met, all parts: %d of %d.**" % (met_count, goal_count))

    # iscsi-perf
    L.append("")
    L.append("## Transport ceiling (libiscsi iscsi-perf, READ only, no FUSE, whole LUN)")
    L.append("")
    for name, what in (("rand4k-qd1", "random 4 KiB, 1 in flight, 1 GiB LUN 1"),
                       ("rand4k-qd32", "random 4 KiB, 32 in flight, 1 GiB LUN 1"),
                       ("seq1m-qd8", "sequential 1 MiB, 8 in flight, 1 GiB LUN 1"),
                       ("rand4k-qd1-2g", "random 4 KiB, 1 in flight, 2 GiB LUN 2"),
                       ("rand4k-qd32-2g", "random 4 KiB, 32 in flight, 2 GiB LUN 2")):
        p = perf.get(name)
        if p is None:
            continue
        if "error" in p:
            L.append("- iscsi-perf %s: failed (%s)" % (what, p["error"]))
        else:
            L.append("- iscsi-perf %s: %d IOPS, %.1f MB/s" % (what, p["iops"], p["bw_bytes"] / 1e6))
    if not perf:
        L.append("- not run")

    # RSS
    L.append("")
    L.append("## Peak RSS (VmHWM after the series)")
    L.append("")
    rss = {}
    for key, who in (("rss_qsd_kb", "qemu-storage-daemon (iSCSI)"),
                     ("rss_ramref_kb", "qemu-storage-daemon (RAM reference)"),
                     ("rss_iscsifs_kb", "iscsifs")):
        v = meta.get(key)
        if not v:
            continue
        try:
            kb = int(v)
        except ValueError:
            L.append("- %s: %s" % (who, v))
            continue
        rss[key[4:-3]] = kb
        line = "- %s: %.1f MiB" % (who, kb / 1024.0)
        if key == "rss_iscsifs_kb":
            ok = kb / 1024.0 <= RSS_LIMIT_MIB
            line += " — limit cache_size + 64 MiB = %d MiB: %s" % (RSS_LIMIT_MIB, "met" if ok else "**NOT met**")
        L.append(line)
    for name, what in (("16luns", "16 LUNs of 256 MiB read at once (dd, 1 MiB)"),
                       ("1000luns", "a target with 1000 LUNs of 4 MiB (mount, then every LUN read, 16 at a time)")):
        v = meta.get("e_%s_rss_kb" % name)
        if not v:
            if meta.get("e_%s_note" % name):
                L.append("- iscsifs, %s: %s" % (what, meta["e_%s_note" % name]))
            continue
        kb = int(v)
        rss["e_" + name] = kb
        ok = kb / 1024.0 <= RSS_LIMIT_MIB
        L.append("- iscsifs, %s: %.1f MiB (after mount %.1f MiB; mount took %s s; %s threads) — "
                 "limit cache_size + 64 MiB = %d MiB: %s" % (
                     what, kb / 1024.0, int(meta.get("e_%s_rss_after_mount_kb" % name, 0)) / 1024.0,
                     meta.get("e_%s_mount_s" % name, "?"), meta.get("e_%s_threads" % name, "?"),
                     RSS_LIMIT_MIB, "met" if ok else "**NOT met**"))
    if not rss:
        L.append("- not measured")

    L.append("")
    L.append("Load average (1/5/15 min) at start: %s; at end: %s (other work on the machine "
             "makes numbers noisy; compare runs made under similar load)." % (
                 meta.get("load_start", "?"), meta.get("load_end", "?")))
    L.append("")
    L.append("Versions: %s" % meta.get("versions", "?"))
    md = "\n".join(L) + "\n"

    os.makedirs(outdir, exist_ok=True)
    with open(os.path.join(outdir, "results.md"), "w") as f:
        f.write(md)

    doc = {
        "meta": meta,
        "noise_limit": NOISE_LIMIT,
        "jobs": [{"id": j, "label": l, "goal": g} for j, l, _, g in JOBS],
        "hot_ref_goal": HOT_REF_GOAL,
        "fio": results,
        "ratios": {row["id"]: row["ratio"] for row in rows + rows_b},
        "goals_met": {row["id"]: row["met"] for row in rows + rows_b},
        "ceiling_ratios": {row["id"]: row.get("ceiling_ratio") for row in rows_b},
        "iscsi_perf": perf,
        "rss_kb": rss,
        "rss_limit_mib": RSS_LIMIT_MIB,
    }
    with open(os.path.join(outdir, "results.json"), "w") as f:
        json.dump(doc, f, indent=2, sort_keys=True)
        f.write("\n")

    chart(rows + rows_b, outdir, meta)
    sys.stdout.write(md)
    return 0


def chart(rows, outdir, meta):
    """Grouped IOPS bars (log scale) and, when iscsifs ran, ratio bars with goal marks."""
    png = os.path.join(outdir, "bench.png")
    datadir = os.path.join(outdir, "chart")
    os.makedirs(datadir, exist_ok=True)
    iops_dat = os.path.join(datadir, "iops.dat")
    ratio_dat = os.path.join(datadir, "ratio.dat")

    def num(r):
        return "?" if not r or r.get("iops") is None else "%.1f" % r["iops"]

    with open(iops_dat, "w") as f:
        f.write("# job qsd iscsifs ramref\n")
        for row in rows:
            if row["ref"]:
                continue
            ref = row.get("ram")
            if row["id"] == "hotread":
                ref = next((r["qsd"] for r in rows if r["id"] == "hotread_vs_ref"), None)
            f.write('"%s" %s %s %s\n' % (row["short"], num(row["qsd"]), num(row["ours"]), num(ref)))
    have_ratio = any(row["ratio"] is not None for row in rows)
    ymax = 2.5
    with open(ratio_dat, "w") as f:
        for i, row in enumerate(rows):
            r = row["ratio"]
            f.write('%d "%s" %s %s %s\n' % (
                i, row["short"], "?" if r is None else "%.3f" % r,
                "?" if row["goal"] is None else "%.2f" % row["goal"],
                "?" if r is None else ("2" if row["met"] is None else "1" if row["met"] else "0")))
            if r is not None:
                ymax = max(ymax, r * 1.15)
    title = "iscsifs vs qemu-storage-daemon FUSE export, same tgt LUN%s" % (
        " (--quick)" if meta.get("quick") == "1" else "")
    gp = []
    gp.append('set terminal pngcairo size %d,%d font "DejaVu Sans,10"' % (
        max(1100, 70 * len(rows)), 820 if have_ratio else 480))
    gp.append('set xtics rotate by -30')
    gp.append('set output "%s"' % png)
    gp.append('set datafile missing "?"')
    if have_ratio:
        gp.append('set multiplot layout 2,1 title "%s" font ",12"' % title)
    else:
        gp.append('set title "%s\\n(iscsifs not measured: no ratios)" font ",12"' % title)
    gp.append('set style data histograms')
    gp.append('set style histogram clustered gap 1')
    gp.append('set style fill solid 0.85 border -1')
    gp.append('set boxwidth 0.9')
    gp.append('set logscale y')
    gp.append('set ylabel "IOPS (log scale)"')
    gp.append('set grid ytics')
    gp.append('set key top right')
    gp.append('set xtics nomirror')
    gp.append('set yrange [1:*]')
    gp.append("plot '%s' using 2:xtic(1) title 'qsd (iSCSI)' lc rgb '#7f7f7f', "
              "'' using 3 title 'iscsifs' lc rgb '#1f77b4', "
              "'' using 4 title 'RAM-backed FUSE ref' lc rgb '#2ca02c'" % iops_dat)
    if have_ratio:
        gp.append('unset logscale y')
        gp.append('set yrange [0:%.2f]' % ymax)
        gp.append('set xrange [-0.6:%.1f]' % (len(rows) - 0.4))
        gp.append('set ylabel "iscsifs / qsd (IOPS)"')
        gp.append('set boxwidth 0.6')
        gp.append('set style fill solid 0.85 border -1')
        gp.append('set style textbox opaque noborder')
        gp.append('set arrow 1 from -0.6,1 to %.1f,1 nohead dt 2 lc rgb "black"' % (len(rows) - 0.4))
        gp.append("plot '%s' using 1:($5==1?$3:1/0):xtic(2) with boxes lc rgb '#2ca02c' title 'ratio (goal met)', "
                  "'' using 1:($5==0?$3:1/0) with boxes lc rgb '#d62728' title 'ratio (goal missed)', "
                  "'' using 1:($5==2?$3:1/0) with boxes lc rgb '#1f77b4' title 'ratio (no goal)', "
                  "'' using ($1-0.4):4:(0.8):(0) with vectors nohead lw 3 lc rgb 'black' title 'goal', "
                  "'' using 1:3:(sprintf('%%.2f',$3)) with labels boxed offset 0,1 notitle" % ratio_dat)
        gp.append('unset multiplot')
    gp_path = os.path.join(datadir, "bench.gp")
    with open(gp_path, "w") as f:
        f.write("\n".join(gp) + "\n")
    try:
        p = subprocess.run(["gnuplot", gp_path], capture_output=True, text=True, timeout=60)
        if p.returncode != 0:
            sys.stderr.write("gnuplot failed:\n%s\n" % p.stderr)
    except (OSError, subprocess.TimeoutExpired) as e:
        sys.stderr.write("gnuplot not run: %s\n" % e)


def main(argv):
    if len(argv) == 4 and argv[1] == "spread":
        return cmd_spread(argv[2], argv[3])
    if len(argv) == 4 and argv[1] == "build":
        return build(argv[2], argv[3])
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
