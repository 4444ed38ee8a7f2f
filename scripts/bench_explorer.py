"""Benchmark the explorer on recorded runs: start time and the latency of its main endpoints.

    flock /work/bench.lock python scripts/bench_explorer.py RUN_DIR [RUN_DIR_B] --requests 30 --json out.json

Starts ``responsibility explore`` in a subprocess, as a user would, and measures the time to the printed URL, to the
first page and to the first data. Then, for each endpoint, the first request (cold: it may compute and cache, e.g.
a score over every example) and ``--requests`` more with varying pages and ids (warm: p50 and p95). ``--fresh``
deletes the runs' explorer caches first, so that the cold figures include every computation; a second launch
without it shows the start with the caches on disk.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def get(url: str, data: dict | None = None, token: str | None = None) -> float:
    request = urllib.request.Request(url)
    if data is not None:
        request.data = json.dumps(data).encode()
        request.add_header("Content-Type", "application/json")
        request.add_header("X-Explorer-Token", token or "")
    start = time.perf_counter()
    with urllib.request.urlopen(request, timeout=3600) as response:
        response.read()
        if response.status != 200:
            raise RuntimeError(f"{url}: HTTP {response.status}")
    return time.perf_counter() - start


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="one or two run directories (two: compare is measured)")
    parser.add_argument("--requests", type=int, default=30, help="warm requests per endpoint (default 30)")
    parser.add_argument("--fresh", action="store_true", help="delete the runs' explorer caches first")
    parser.add_argument("--json", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()
    if args.fresh:
        for run in args.runs:
            shutil.rmtree(run / ".explorer", ignore_errors=True)
            (run / "curation.json").unlink(missing_ok=True)
    rng = random.Random(0)

    t0 = time.perf_counter()
    server = subprocess.Popen(
        [sys.executable, "-m", "responsibility.cli", "explore", *map(str, args.runs), "--port", "0", "--no-browser"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = server.stdout.readline() if server.stdout else ""
        if "http://" not in line:
            raise RuntimeError(f"the explorer did not start: {line!r}")
        url = line.split()[-1]
        started = time.perf_counter() - t0
        base, token = url.split("/?token=")
        get(base + "/")
        first_page = time.perf_counter() - t0
        get(base + "/api/runs")
        first_data = time.perf_counter() - t0
        runs = json.loads(urllib.request.urlopen(base + "/api/runs").read())
        n, t, c = runs[0]["num_examples"], runs[0]["num_tests"], runs[0]["num_classes"]
        endpoints = {
            "suspects (label_push, page of 50)": lambda: f"/api/runs/0/suspects?offset={rng.randrange(n - 50)}",
            "suspects (one class)": lambda: f"/api/runs/0/suspects?score=label_push&cls={rng.randrange(c)}",
            "suspects (final_loss)": lambda: f"/api/runs/0/suspects?score=final_loss&offset={rng.randrange(n - 50)}",
            "suspects (self_responsibility)": lambda: "/api/runs/0/suspects?score=self_responsibility",
            "suspects (class_agreement)": lambda: "/api/runs/0/suspects?score=class_agreement",
            "detection curves": lambda: "/api/runs/0/detection",
            "confusion": lambda: "/api/runs/0/confusion",
            "test inputs (errors, page of 50)": lambda: "/api/runs/0/tests?errors=1",
            "test input explained": lambda: f"/api/runs/0/tests/{rng.randrange(t)}",
            "classes": lambda: "/api/runs/0/classes",
            "example": lambda: f"/api/runs/0/examples/{rng.randrange(n)}",
            "thumbnail": lambda: f"/api/runs/0/thumbs/train/{rng.randrange(n)}",
            "curation: relabel one example (POST)": lambda: (
                "/api/runs/0/curation",
                {"action": "relabel", "ids": [rng.randrange(n)], "label": rng.randrange(c), "reason": "bench"},
            ),
        }
        if len(args.runs) > 1:
            endpoints["compare two runs"] = lambda: "/api/compare?a=0&b=1"
        rows = []
        for name, make in endpoints.items():
            timings = []
            for _ in range(1 + args.requests):
                target = make()
                path, body = target if isinstance(target, tuple) else (target, None)
                timings.append(get(base + path, body, token))
            warm = timings[1:]
            rows.append(
                {
                    "endpoint": name,
                    "cold_s": timings[0],
                    "p50_s": percentile(warm, 0.5),
                    "p95_s": percentile(warm, 0.95),
                    "mean_s": statistics.fmean(warm),
                }
            )
    finally:
        server.terminate()
        server.wait(30)

    print(f"runs: {', '.join(str(r) for r in args.runs)} ({n} training examples, {t} test inputs)")
    print(f"start: URL printed after {started:.2f} s, first page {first_page:.2f} s, first data {first_data:.2f} s\n")
    print("| endpoint | first request (s) | p50 (ms) | p95 (ms) |\n| --- | ---: | ---: | ---: |")
    for r in rows:
        print(f"| {r['endpoint']} | {r['cold_s']:.3f} | {1e3 * r['p50_s']:.1f} | {1e3 * r['p95_s']:.1f} |")
    if args.json:
        doc = {
            "runs": [str(r) for r in args.runs],
            "examples": n,
            "tests": t,
            "requests": args.requests,
            "start_s": {"url": started, "first_page": first_page, "first_data": first_data},
            "endpoints": rows,
        }
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
