#!/usr/bin/env python3
"""Paired comparison of proxies on one or more workloads. Started by bench/paired.sh.

bench/run.sh compares medians of a few long runs per proxy. On a shared or virtual host the
CPU cost of the same request drifts by 10 % or more within a minute, so two medians taken
seconds apart differ by more than the effects worth measuring (a 2 % change reads as anything
from -8 % to +5 %). This script measures a ratio instead: many short runs (DURATION, 1 s) of
the proxies back to back, the order reversed every pair, and for each pair the ratio of each
proxy's CPU time per request to the reference's (the first of PROXIES). Slow phases of the
host hit both runs of a pair, so they cancel in the ratio; the median of PAIRS ratios and
its middle half are reported.

Same setup as run.sh (origin, configs, CPU pinning, wrk, CPU time per request): see
harness.py. The warm-up is one run per proxy before each workload's pairs. Prints a heading
line, then a Markdown table per workload as it completes; --out FILE writes them there too.
"""
import argparse
import os
import shutil
import signal
import statistics
import sys
import time

import harness as H


def quantile(xs, q):
    """Linear interpolation between the closest ranks (xs sorted)."""
    if len(xs) == 1:
        return xs[0]
    pos = q * (len(xs) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def summary(runs, ref_runs):
    ratios = sorted(r["cpu_us"] / f["cpu_us"] for r, f in zip(runs, ref_runs))
    return {
        "cpu_us": statistics.median(r["cpu_us"] for r in runs),
        "p99_ms": statistics.median(r["p99_ms"] for r in runs),
        "ratio": statistics.median(ratios),
        "q1": quantile(ratios, 0.25),
        "q3": quantile(ratios, 0.75),
        "lo": ratios[0],
        "hi": ratios[-1],
    }


def table(w, order, runs, pairs, duration):
    ref = order[0]
    lines = [f"#### `{w.name}`: {w.title} ({pairs} pairs of {duration})", "",
             f"| proxy | CPU µs/req (median) | / {ref}, median of the pair ratios "
             f"| middle half | lowest – highest | p99 ms (median) |",
             "|---|---:|---:|---|---|---:|"]
    for p in order:
        s = summary(runs[p], runs[ref])
        ratio = "1" if p == ref else f"**{s['ratio']:.3f}**"
        spread = "" if p == ref else f"{s['q1']:.3f} – {s['q3']:.3f}"
        extremes = "" if p == ref else f"{s['lo']:.3f} – {s['hi']:.3f}"
        lines.append(f"| {p} | {s['cpu_us']:.2f} | {ratio} | {spread} | {extremes} | "
                     f"{s['p99_ms']:.3f} |")
    return "\n".join(lines) + "\n"


def run(a, b, order, workloads, pairs, duration, warmup):
    out = []
    for w in workloads:
        procs = [p for p in order if b.runs(w, p)]
        if len(procs) < 2 or procs[0] != order[0]:
            H.log(f"{w.name}: skipped (runs for {', '.join(procs) or 'no proxy'}; needs "
                  f"{order[0]} and one more)")
            continue
        infos = {}
        for p in procs:
            infos[p] = b.start_proxy(p, 1)
            port = infos[p]["tls_port"] if w.tls else infos[p]["port"]
            b.check_http(port, w.tls, f"{infos[p]['tag']} ({w.name})", [w.path])
        for p in procs if warmup else []:
            b.wrk(infos[p], w, warmup)
        runs = {p: [] for p in procs}
        for i in range(pairs):
            for p in (procs if i % 2 == 0 else procs[::-1]):
                res = b.wrk(infos[p], w, duration)
                bad = res["errors"] + res["non2xx"]
                if res["requests"] == 0 or bad > max(10, 0.01 * res["requests"]):
                    raise RuntimeError(f"{w.name} {p}: {res['requests']} requests, "
                                       f"{res['errors']} socket errors, {res['non2xx']} non-2xx")
                runs[p].append(res)
            ref = runs[procs[0]][-1]["cpu_us"]
            H.log(f"  pair {i + 1:3d}/{pairs} {w.name}: " + "  ".join(
                f"{p} {runs[p][-1]['cpu_us']:.2f}" + ("" if p == procs[0] else
                                                     f" ({runs[p][-1]['cpu_us'] / ref:.3f})")
                for p in procs))
        out.append(table(w, procs, runs, pairs, duration))
        print("\n" + out[-1], flush=True)  # kept even if a later workload fails
        for p in procs:
            b.stop_proxy(p, 1)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sluice", required=True)
    ap.add_argument("--sluice-baseline", default="")
    ap.add_argument("--command", default="bench/paired.sh")
    ap.add_argument("--out", default="")
    a = ap.parse_args()
    env = os.environ
    try:
        pairs = int(env.get("PAIRS") or "30")
    except ValueError:
        pairs = 0
    if pairs < 1:
        raise SystemExit("PAIRS must be a number >= 1")
    duration = env.get("DURATION") or "1s"
    warmup = env.get("WARMUP", "2s")  # empty: no warm-up
    H.parse_secs(duration)
    if warmup:
        H.parse_secs(warmup)
    if a.sluice_baseline:
        H.PROXIES.append(H.BASELINE)
    order = [p for p in env.get("PROXIES", "nginx,sluice").split(",") if p]
    unknown = [p for p in order if p not in H.PROXIES]
    if unknown or len(order) < 2 or len(set(order)) != len(order):
        raise SystemExit(f"PROXIES: two or more of {','.join(H.PROXIES)}, the reference first"
                         + ("" if a.sluice_baseline else f" ({H.BASELINE} needs SLUICE_BASELINE)"))
    os.environ["PROXIES"] = ",".join(order)  # Bench.runs() reads it
    names = set(filter(None, env.get("WORKLOADS", "small").split(",")))
    workloads = [w for w in H.WORKLOADS if w.name in names]
    if len(workloads) != len(names):
        raise SystemExit(f"WORKLOADS: known are {','.join(w.name for w in H.WORKLOADS)}")
    os.environ["WORKLOADS"] = ",".join(sorted(names))  # what the Sluice config needs
    a.connections = int(env.get("CONNECTIONS", "64"))
    a.idle = a.idle_tls = 10000  # HAProxy's maxconn is sized from these: as in run.sh
    b = H.Bench(a)
    t0 = time.monotonic()
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    load = " ".join(open("/proc/loadavg").read().split()[:3])
    head = (f"Paired runs, {started}, load at start {load}, {H.machine()}: "
            f"`{a.command}`\n")
    print(head, flush=True)

    def on_signal(sig, _frame):
        H.PROCS.stop_all()
        sys.exit(128 + sig)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    try:
        b.prepare()
        b.start_origin()
        tables = run(a, b, order, workloads, pairs, duration, warmup)
        if not tables:
            raise SystemExit("nothing measured: no workload runs for the reference and "
                             "another proxy (Sluice-only workloads: PROXIES=sluice-base,sluice)")
    finally:
        H.PROCS.stop_all()
        shutil.rmtree(b.tmp, ignore_errors=True)
    text = head + "\n" + "\n".join(tables)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    H.log(f"done in {time.monotonic() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
