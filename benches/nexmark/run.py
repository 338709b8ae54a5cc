#!/usr/bin/env python3
"""Nexmark side by side: weir and Apache Flink SQL on the same file.

Generates one JSON-lines file with `weir nexmark` (default 10,000,000
events: 9.2 M bids), then for each query runs weir (examples/nexmark/<q>.toml
with a discarding sink) and Flink 2.x SQL (flink_query.py: PyFlink
TableEnvironment, local mini-cluster, filesystem source, blackhole sink),
alternating weir / Flink, --runs times each, at parallelism 1; then weir at
parallelism 2 (every operator, and the file source as two byte-range splits). Prints medians of each side's job time (weir: "job ... finished
in" from `weir run`; Flink: the job's net runtime), bids per second, the
Flink/weir ratio and weir's speed-up from parallelism 1 to 2.

Flink comes from PyPI (apache-flink, pinned below) in a venv at
.toolchains/flink; without it, Flink is skipped with a message, and
--install-flink installs it. Java 17 must be on PATH.

This is a benchmark, not a test: it asserts nothing about the numbers.

    python3 benches/nexmark/run.py [--events N] [--runs 3] [--queries q0,q1,...]
                                   [--install-flink] [--no-flink] [--no-p2]
                                   [--weir BIN] [--guests DIR] [--work DIR]

--guests runs the operators from DIR (a copy of target/wasm/wasm32-wasip2/
release) instead of building them, so builds during a long run (other
work in the tree) do not change what is measured.
"""

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FLINK_VERSION = "2.3.0"
REPO = Path(__file__).resolve().parents[2]
VENV = REPO / ".toolchains" / "flink"
FLINK_PYTHON = VENV / "bin" / "python"
QUERIES = ["q0", "q1", "q2", "q3", "q4", "q5", "q7", "q8", "q11"]
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
GUESTS = REPO / "target" / "wasm" / "wasm32-wasip2" / "release"
BIDS_PER_EVENT = 46 / 50


def log(*args):
    print(*args, file=sys.stderr, flush=True)


def flink_installed():
    if not FLINK_PYTHON.exists():
        return False
    r = subprocess.run(
        [str(FLINK_PYTHON), "-c", "import pyflink"], capture_output=True
    )
    return r.returncode == 0


def install_flink():
    log(f"installing apache-flink=={FLINK_VERSION} into {VENV}")
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run(
        [str(VENV / "bin" / "pip"), "install", "-q", f"apache-flink=={FLINK_VERSION}"],
        check=True,
    )


def build(weir, guests_too=True):
    log("building weir and the Nexmark operators")
    if not weir:
        subprocess.run(
            ["cargo", "build", "--release", "--bin", "weir"], cwd=REPO, check=True
        )
    if not guests_too:
        return
    crates = []
    for q in QUERIES:
        crates += ["-p", f"nexmark-{q}"]
    subprocess.run(
        ["cargo", "build", "--release", "--target", "wasm32-wasip2",
         "--target-dir", "target/wasm", *crates],
        cwd=REPO, check=True,
        env={k: v for k, v in os.environ.items() if k != "CARGO_TARGET_DIR"},
    )


def weir_job(q, events_file, work, guests):
    """The example job with absolute paths and a discarding sink. Run with
    `--parallelism 2`, its file source reads two byte ranges too."""
    text = (REPO / "examples" / "nexmark" / f"{q}.toml").read_text()
    text = text.replace("../../target/wasm/wasm32-wasip2/release/", f"{guests}/")
    text = text.replace('path = "events.jsonl"', f'path = "{events_file}"')
    sink = re.search(r"\[\[sink\]\][^\[]*$", text, re.S)
    body = sink.group(0)
    body = re.sub(r'kind = "file"\n', 'kind = "discard"\n', body)
    body = re.sub(r'path = "[^"]*"\n', "", body)
    text = text[: sink.start()] + body
    path = work / f"{q}.toml"
    path.write_text(text)
    return path


def run_weir(weir, job, parallelism, work, guests, events_file):
    """Runs `job` with the guests, the work dir and the events file's
    directory as weir's read roots (it reads nothing outside them)."""
    cmd = [weir, "run", str(job), "--parallelism", str(parallelism),
           "--read-root", str(guests), "--read-root", str(work),
           "--read-root", str(Path(events_file).resolve().parent)]
    started = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=work)
    wall = time.monotonic() - started
    if r.returncode != 0:
        raise RuntimeError(f"weir {job.name} p={parallelism} failed:\n{r.stderr[-3000:]}")
    m = re.search(r"finished in ([0-9.]+) s", r.stderr)
    return float(m.group(1)) if m else wall


def run_flink(q, events_file, delay_ms):
    cmd = [str(FLINK_PYTHON), str(Path(__file__).parent / "flink_query.py"),
           str(events_file), q, "--parallelism", "1",
           "--watermark-delay-ms", str(delay_ms)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"flink {q} failed:\n{r.stderr[-3000:]}")
    line = [l for l in r.stdout.splitlines() if l.startswith("{")][-1]
    return json.loads(line)["job_ms"] / 1000


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--events", type=int, default=10_000_000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--queries", default=",".join(QUERIES))
    p.add_argument("--work", default=None, help="directory for the file and jobs (default: a temp dir)")
    p.add_argument("--weir", default=None, help="the weir binary (default: build it)")
    p.add_argument("--guests", default=None,
                   help="directory of nexmark_q*.wasm to run (default: build them into target/wasm)")
    p.add_argument("--install-flink", action="store_true")
    p.add_argument("--no-flink", action="store_true")
    p.add_argument("--no-p2", action="store_true", help="skip weir at parallelism 2")
    args = p.parse_args()
    queries = args.queries.split(",")
    for q in queries:
        if q not in QUERIES:
            sys.exit(f"unknown query {q}; known: {', '.join(QUERIES)}")

    if args.install_flink and not flink_installed():
        install_flink()
    flink = not args.no_flink and flink_installed()
    if not flink and not args.no_flink:
        log(f"Flink is not installed ({VENV}); skipping it. Install it with --install-flink.")

    if args.guests:
        guests = Path(args.guests).resolve()
        if not args.weir:
            build(None, guests_too=False)
    else:
        guests = GUESTS
        build(args.weir)
    weir = args.weir or str(TARGET / "release" / "weir")
    work = Path(args.work or tempfile.mkdtemp(prefix="nexmark-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    events_file = work / f"events-{args.events}.jsonl"
    if not events_file.exists():
        log(f"generating {args.events} events into {events_file}")
        subprocess.run([weir, "nexmark", "--events", str(args.events), "--out", str(events_file)], check=True)
    bids = args.events * BIDS_PER_EVENT
    log(f"{events_file}: {events_file.stat().st_size / 1e6:.0f} MB, {bids / 1e6:.2f} M bids")

    results = {}
    for q in queries:
        job = weir_job(q, events_file, work, guests)
        # One untimed run compiles the component into weir's cache (and
        # warms the page cache for both sides).
        run_weir(weir, job, 1, work, guests, events_file)
        w1, w2, fl = [], [], []
        for i in range(args.runs):
            w1.append(run_weir(weir, job, 1, work, guests, events_file))
            if flink:
                fl.append(run_flink(q, events_file, 1000))
            if not args.no_p2:
                w2.append(run_weir(weir, job, 2, work, guests, events_file))
            log(f"{q} run {i + 1}: weir p1 {w1[-1]:.2f} s"
                + (f", flink {fl[-1]:.2f} s" if fl else "")
                + (f", weir p2 {w2[-1]:.2f} s" if w2 else ""))
        results[q] = (w1, w2, fl)

    med = statistics.median
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"\nNexmark, {args.events} events ({bids / 1e6:.2f} M bids), medians of {args.runs} runs, job time"
          f" (load average at the end: {load})")
    print("| query | weir p=1 | bids/s | Flink p=1 | bids/s | Flink / weir | weir p=2 | p2 speed-up |")
    print("|---|---|---|---|---|---|---|---|")
    for q, (w1, w2, fl) in results.items():
        row = [q, f"{med(w1):.2f} s", f"{bids / med(w1) / 1e6:.2f} M"]
        if fl:
            row += [f"{med(fl):.2f} s", f"{bids / med(fl) / 1e6:.2f} M", f"{med(fl) / med(w1):.2f}x"]
        else:
            row += ["-", "-", "-"]
        if w2:
            row += [f"{med(w2):.2f} s", f"{med(w1) / med(w2):.2f}x"]
        else:
            row += ["-", "-"]
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
