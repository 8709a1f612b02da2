#!/usr/bin/env python3
"""The table of bench/methods.sh: per method and task, mean and range (min..max) over the
seeds of the numbers in each run's metrics.jsonl (OUT/<task>/seed<S>/runs/<method>/):
held-out greedy accuracy and judge agreement (eval lines) at iterations 0, N/2, N, the
accuracy gain of each run (acc@N - acc@0, then mean and range); judge
format failures (iteration lines: judge_format_failures / judgments) at 1, N/2, N; mean
response length (mean_response_tokens, over iterations 1..N); pairs or GRPO groups per
iteration ("pairs"); wall time of a run (bench_wall_s, else the sum of the lines'
seconds). Writes OUT/table.md and OUT/table.json and prints the markdown. A run whose
metrics.jsonl lacks a number is an error naming the file and the key."""
import argparse
import json
import math
import os
import sys
import time


def fail(msg):
    print("methods_table.py: error: " + msg, file=sys.stderr)
    sys.exit(1)


def read_run(path, iterations):
    evals, its = {}, {}
    try:
        with open(path) as f:
            for n, line in enumerate(f, 1):
                try:
                    o = json.loads(line)
                except ValueError as e:
                    fail("%s:%d: not JSON (%s)" % (path, n, e))
                if o.get("event") == "eval":
                    evals[o["iteration"]] = o
                elif o.get("event") == "iteration":
                    its[o["iteration"]] = o
    except OSError as e:
        fail("%s: %s" % (path, e))
    if iterations not in its:
        fail("%s: no iteration line for iteration %d (the run is not finished)" % (path, iterations))
    return evals, its


def num(o, key, path, t):
    v = o.get(key)
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        fail("%s: iteration %d: %s is %r, not a number" % (path, t, key, v))
    return float(v)


def points(iterations):
    mid = iterations // 2
    return sorted({0, mid, iterations}), sorted({1, max(mid, 1), iterations})


def run_values(path, iterations):
    evals, its = read_run(path, iterations)
    eval_pts, fmt_pts = points(iterations)
    v = {}
    for t in eval_pts:
        if t not in evals:
            fail("%s: no eval line for iteration %d (eval.every must evaluate it)" % (path, t))
        v["accuracy@%d" % t] = 100 * num(evals[t], "accuracy", path, t)
        ja = evals[t].get("judge_agreement")
        v["judge_agreement@%d" % t] = 100 * ja if isinstance(ja, (int, float)) else None
    for t in fmt_pts:
        if t not in its:
            fail("%s: no iteration line for iteration %d" % (path, t))
        j = num(its[t], "judgments", path, t)
        f = num(its[t], "judge_format_failures", path, t)
        v["format_failures@%d" % t] = 100 * f / j if j > 0 else None  # None: no model judgments (verifier)
    # the gain over the run's own start (a method with its own M1 starts elsewhere)
    v["gain"] = v["accuracy@%d" % eval_pts[-1]] - v["accuracy@%d" % eval_pts[0]]
    lens = [num(its[t], "mean_response_tokens", path, t) for t in range(1, iterations + 1)]
    v["response_tokens"] = sum(lens) / len(lens)
    v["pairs"] = sum(num(its[t], "pairs", path, t) for t in range(1, iterations + 1)) / iterations
    wall = os.path.join(os.path.dirname(path), "bench_wall_s")
    if os.path.exists(wall):
        v["wall_s"] = float(open(wall).read().split()[0])
    else:
        v["wall_s"] = sum(float(o.get("seconds") or 0) for o in list(evals.values()) + list(its.values()))
    return v


def summary(xs):
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    if not xs:
        return None
    return {"mean": sum(xs) / len(xs), "min": min(xs), "max": max(xs), "n": len(xs)}


def cell(s, digits=1):
    if s is None:
        return "-"
    f = "%%.%df" % digits
    if s["n"] == 1 or s["min"] == s["max"]:
        return f % s["mean"]
    return (f + " (" + f + ".." + f + ")") % (s["mean"], s["min"], s["max"])


def main():
    ap = argparse.ArgumentParser()
    for k in ("out", "methods", "seeds", "tasks", "layout", "machine", "commit", "command", "skips"):
        ap.add_argument("--" + k, required=k != "skips", default="")
    ap.add_argument("--iterations", type=int, required=True)
    a = ap.parse_args()
    methods, seeds, tasks = a.methods.split(","), a.seeds.split(","), a.tasks.split(",")
    skips = dict(l.split("=", 1) for l in a.skips.splitlines() if "=" in l)
    eval_pts, fmt_pts = points(a.iterations)
    keys = (["accuracy@%d" % t for t in eval_pts] + ["gain"] + ["judge_agreement@%d" % t for t in eval_pts] +
            ["format_failures@%d" % t for t in fmt_pts] + ["response_tokens", "pairs", "wall_s"])
    rows = []
    for task in tasks:
        for m in methods:
            if "%s:%s" % (task, m) in skips:
                rows.append({"task": task, "method": m, "skipped": skips["%s:%s" % (task, m)]})
                continue
            per_seed = {}
            for s in seeds:
                per_seed[s] = run_values(os.path.join(a.out, task, "seed" + s, "runs", m, "metrics.jsonl"), a.iterations)
            rows.append({"task": task, "method": m, "seeds": per_seed,
                         "summary": {k: summary([per_seed[s][k] for s in seeds]) for k in keys}})
    head = ["task", "method"]
    head += ["acc@%d %%" % t for t in eval_pts] + ["gain @%d" % eval_pts[-1]] + ["judge agr@%d %%" % t for t in eval_pts]
    head += ["judge fmt fail@%d %%" % t for t in fmt_pts] + ["resp len (tokens)", "pairs/groups per it", "wall s"]
    lines = [
        "# Methods comparison (bench/methods.sh)",
        "",
        "- date: %s" % time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "- machine: %s" % a.machine,
        "- commit: %s" % a.commit,
        "- command: `%s` (each run's command line: command.txt next to this table)" % a.command,
        "- tasks %s; seeds %s (mean and range min..max over them); %d iterations; layout %s" % (
            ", ".join(tasks), ", ".join(seeds), a.iterations, a.layout),
        "- acc: held-out greedy accuracy; gain: acc@%d - acc@0 of each run (mean and range over seeds); "
        "judge agr: the judge's verdict on one temperature-1 sample per "
        "held-out prompt vs the checker; judge fmt fail: the iteration's model judgments without a score in "
        "the judge's format / judgments (- : no model judgments, e.g. verifier rewards); resp len: mean "
        "tokens per sample (EOS included) over iterations 1..%d; pairs/groups: DPO pairs or GRPO groups "
        "trained per iteration; wall: one run" % (a.iterations, a.iterations),
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in rows:
        if "skipped" in r:
            lines.append("| %s | %s | skipped: %s |" % (r["task"], r["method"], r["skipped"]) + " |" * (len(head) - 3))
            continue
        sm = r["summary"]
        cells = [cell(sm[k], 0 if k in ("pairs", "wall_s") else 1) for k in keys]
        lines.append("| %s | %s | %s |" % (r["task"], r["method"], " | ".join(cells)))
    md = "\n".join(lines) + "\n"
    doc = {"machine": a.machine, "commit": a.commit, "command": a.command, "iterations": a.iterations,
           "layout": a.layout, "tasks": tasks, "seeds": seeds, "methods": methods, "columns": keys, "rows": rows}
    for name, text in (("table.md", md), ("table.json", json.dumps(doc, indent=1) + "\n")):
        tmp = os.path.join(a.out, name + ".tmp")
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, os.path.join(a.out, name))
    sys.stdout.write(md)


if __name__ == "__main__":
    main()
