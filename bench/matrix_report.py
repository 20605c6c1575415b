#!/usr/bin/env python3
"""Helper of bench/matrix.sh (standard library only).

  matrix_report.py row SHAPE CONFIG RUN RC LOAD TIME_FILE INPUT_BYTES [SUMMARY_JSON | CHAINSAW_JSONL CHAINSAW_LOG]
      (INPUT_BYTES: uncompressed input bytes; 0 = take the summary's)
  matrix_report.py size DIR
      prints the uncompressed bytes of the files under DIR (gzip undone, UTF-16 as
      UTF-8, links followed)
      prints one tab-separated result row (and problems on stderr)
  matrix_report.py norm FINDINGS_JSONL DATA_DIR OUT_FILE
      writes the findings sorted, with source paths relative to DATA_DIR
  matrix_report.py table RUNS_TSV [PROBLEMS_TXT]
      prints the Markdown table and the Chainsaw/tokenward wall ratios
"""

import json
import os
import re
import statistics
import sys

COLS = ["shape", "config", "run", "rc", "load", "wall", "user", "sys", "rss_kb", "cpu_pct", "bytes", "records",
        "rejected", "findings", "disk_bytes", "problem"]


def parse_time(path):
    t = open(path).read()
    wall = t.split("Elapsed (wall clock) time (h:mm:ss or m:ss):")[1].split("\n")[0].strip()
    secs = sum(float(p) * 60 ** i for i, p in enumerate(reversed(wall.split(":"))))
    user = float(re.search(r"User time \(seconds\): ([\d.]+)", t).group(1))
    sys_s = float(re.search(r"System time \(seconds\): ([\d.]+)", t).group(1))
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", t).group(1))
    cpu = re.search(r"Percent of CPU this job got: (\d+)%", t)
    return secs, user, sys_s, rss, int(cpu.group(1)) if cpu else 0


def row(args):
    shape, config, run, rc, load, time_file, in_bytes = args[:7]
    rest = args[7:]
    wall, user, sys_s, rss, cpu = parse_time(time_file)
    problem = []
    records = rejected = findings = ""
    disk = in_bytes
    rc_i = int(rc)
    if config == "chainsaw":
        out, log = rest
        findings = sum(1 for _ in open(out)) if os.path.exists(out) else 0
        text = open(log, errors="replace").read() if os.path.exists(log) else ""
        errs = [l.strip() for l in re.sub(r"\x1b\[[0-9;]*m", "", text).splitlines() if l.strip().startswith("[x]")]
        if rc_i != 0 or errs:
            problem.append(f"chainsaw rc {rc_i}: " + " | ".join(errs[:2]))
    else:
        (summary,) = rest
        if rc_i not in (0, 1):
            problem.append(f"tokenward exit {rc_i}")
        if os.path.exists(summary):
            s = json.load(open(summary))
            disk = str(s["bytes"])
            if int(in_bytes) <= 0:
                in_bytes = disk
            records = s["records"]["read"]
            rejected = s["records"]["rejected"]
            findings = s["findings"]
            if rejected:
                firsts = [f"{f['path']}: {f['first_rejects'][:1]}" for f in s["files"] if f.get("records_rejected")]
                problem.append(f"{rejected} rejected: " + "; ".join(firsts[:2]))
        else:
            problem.append("no summary written")
    for p in problem:
        print(f"PROBLEM {shape} {config} run {run}: {p}", file=sys.stderr)
    vals = [shape, config, run, rc, load, f"{wall:.3f}", f"{user:.2f}", f"{sys_s:.2f}", rss, cpu, in_bytes,
            records, rejected, findings, disk, "; ".join(problem).replace("\t", " ")]
    print("\t".join(str(v) for v in vals))


def norm(args):
    src, data_dir, out = args
    prefix = os.path.abspath(data_dir).rstrip("/") + "/"
    lines = []
    with open(src) as f:
        for line in f:
            if not line.strip():
                continue
            d = json.loads(line)
            sf = d.get("source_file")
            if isinstance(sf, str) and os.path.abspath(sf).startswith(prefix):
                d["source_file"] = os.path.abspath(sf)[len(prefix):]
            lines.append(json.dumps(d, sort_keys=True, separators=(",", ":")))
    lines.sort()
    with open(out, "w") as f:
        f.write("".join(l + "\n" for l in lines))


def med(v):
    return statistics.median(v) if v else float("nan")


def table(args):
    tsv = args[0]
    rows = []
    with open(tsv) as f:
        for line in f:
            p = line.rstrip("\n").split("\t")
            if p[0] == "shape" or len(p) < len(COLS):
                continue
            rows.append(dict(zip(COLS, p)))
    order, groups = [], {}
    for r in rows:
        k = (r["shape"], r["config"])
        if k not in groups:
            groups[k] = []
            order.append(k)
        groups[k].append(r)
    names = {"builtin": "tokenward built-ins", "sigma": "tokenward + Sigma", "chainsaw": "Chainsaw + Sigma"}
    print("| shape | config | input MB | records | wall best / median (s) | CPU-s best / median | MB per CPU-s | "
          "MB/s best / median | CPU % (median) | peak RSS MiB | findings / hits | rejected | load at start | runs |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|")
    walls = {}
    records_by_shape = {}
    problems = []
    for k in order:
        g = groups[k]
        shape, config = k
        wall = sorted(float(r["wall"]) for r in g)
        cpu = sorted(float(r["user"]) + float(r["sys"]) for r in g)
        mb = int(g[0]["bytes"]) / 1e6
        disk_mb = int(g[0]["disk_bytes"] or 0) / 1e6
        mb_txt = f"{mb:.0f}" + (f" ({disk_mb:.0f} on disk)" if disk_mb and abs(disk_mb - mb) > 0.05 * mb else "")
        rec = g[0]["records"] or records_by_shape.get(shape, "")
        if config != "chainsaw" and g[0]["records"]:
            records_by_shape[shape] = g[0]["records"]
        if config == "chainsaw" and rec:
            rec = f"({rec})"
        finds = sorted({r["findings"] for r in g})
        rej = sorted({r["rejected"] for r in g})
        loads = [float(r["load"]) for r in g]
        rss = max(int(r["rss_kb"]) for r in g) / 1024
        cpct = med([int(r["cpu_pct"]) for r in g])
        walls[k] = (wall[0], med(wall))
        for r in g:
            if r["problem"]:
                problems.append(f"{shape} / {config} run {r['run']}: {r['problem']}")
        print(f"| {shape} | {names.get(config, config)} | {mb_txt} | {rec} | {wall[0]:.2f} / {med(wall):.2f} | "
              f"{cpu[0]:.2f} / {med(cpu):.2f} | {mb / cpu[0]:.0f} | {mb / wall[0]:.0f} / {mb / med(wall):.0f} | {cpct:.0f} | {rss:.0f} | "
              f"{'/'.join(finds)} | {'/'.join(x or '-' for x in rej)} | {min(loads):.2f}-{max(loads):.2f} | {len(g)} |")
    print()
    print("Chainsaw wall / tokenward wall (best / median; > 1 means tokenward is faster):")
    print()
    print("| shape | vs tokenward built-ins | vs tokenward + Sigma (same rules) |")
    print("|---|---:|---:|")
    for shape in dict.fromkeys(s for s, _ in order):
        c = walls.get((shape, "chainsaw"))
        b = walls.get((shape, "builtin"))
        s = walls.get((shape, "sigma"))
        if not c:
            print(f"| {shape} | n/a (Chainsaw cannot read it) | n/a |")
            continue
        f = lambda t: f"{c[0] / t[0]:.2f} / {c[1] / t[1]:.2f}" if t else "-"
        print(f"| {shape} | {f(b)} | {f(s)} |")
    if len(args) > 1 and os.path.exists(args[1]):
        problems += [l.strip() for l in open(args[1]) if l.strip()]
    if problems:
        print()
        print("Problems:")
        for p in problems:
            print(f"- {p}")


def size(args):
    import gzip
    total = 0
    for root, _, files in os.walk(args[0], followlinks=True):
        for n in files:
            p = os.path.join(root, n)
            with open(p, "rb") as f:
                magic = f.read(2)
            gz = magic == b"\x1f\x8b"
            if magic in (b"\xff\xfe", b"\xfe\xff"):
                # UTF-16 counts as the UTF-8 it holds, as gzip counts as
                # what it inflates to: the bytes the reader then splits and
                # parses (for ual-powershell that includes the PowerShell
                # wrapper and indentation, so its MB are not ual's MB).
                with open(p, "rb") as f:
                    total += len(f.read()[2:].decode("utf-16-le" if magic == b"\xff\xfe" else "utf-16-be",
                                                     errors="replace").encode())
            elif gz:
                with gzip.open(p, "rb") as f:
                    while True:
                        b = f.read(1 << 20)
                        if not b:
                            break
                        total += len(b)
            else:
                total += os.path.getsize(p)
    print(total)


if __name__ == "__main__":
    cmd, rest = sys.argv[1], sys.argv[2:]
    {"row": row, "norm": norm, "table": table, "size": size}[cmd](rest)
