#!/usr/bin/env python3
"""Nexmark results: weir against Apache Flink SQL on the same input file.

Generates a small event file with `weir nexmark`, runs each query on weir
(examples/nexmark/<q>.toml with its file sink, at each --parallelism) and
on Flink 2.x SQL (flink_query.py --collect: the query's final result
rows, an updating query's changelog folded), brings both to comparable tuples
and compares them as multisets. Prints per query and parallelism whether
they agree, the row counts and the first differing rows; exits 1 if any
query disagrees.

Where the job and Flink's SQL differ by design (examples/nexmark/README.md),
the comparison follows the answer both must give:

- q1: (auction, bidder, price, ts), prices equal to a relative 1e-9;
- q2: (auction, price); q3: (name, city, state, auction id);
- q4: per category, weir's last running average (the sum is avg * count)
  against Flink's final AVG, an integer average on BIGINT: sum // count;
- q5: (auction, num) (Flink's SELECT has no window_end);
- q7: (auction, price, bidder, ts). Flink's BETWEEN also matches a bid at
  exactly window_end with that window's highest price; such extra Flink
  rows are checked against weir's window_end and price and counted as
  "edge", not as differences;
- q8: (id, name, window start in ms), Flink's TIMESTAMP(3) read in UTC;
- q11: (bidder, bid_count, start, end): weir's end is last bid + gap, as
  Flink's session window_end;
- q0 is not compared (weir's passes every event, Flink's selects bids).

The "only weir" and "only Flink" counts are what is left after these.

Weir is run as run.py runs it (the example job with absolute paths, from
--guests), with the file sink kept and the source's watermark delay set.

    python3 benches/nexmark/compare.py --weir BIN --guests DIR [--work DIR]
        [--events 200000] [--events-per-second 10000] [--disorder-ms 0]
        [--seed 0] [--watermark-delay-ms MS] [--input FILE]
        [--parallelism 1,2] [--queries q1,q2,...]

--input compares on a given event file (for example a few hand-written
lines for an edge case) instead of generating one; weir gets the file's
directory as a read-only data root.

Flink must be installed (python3 benches/nexmark/run.py --install-flink
installs it into .toolchains/flink); Java 17 on PATH.
"""

import argparse
import json
import math
import re
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import run  # noqa: E402  (benches/nexmark/run.py)

QUERIES = ["q1", "q2", "q3", "q4", "q5", "q7", "q8", "q11"]
WINDOW_MS = 10_000
SHOW = 5


def weir_rows(q, values):
    """weir's output values (dicts) as tuples."""
    if q == "q1":
        return [(v["auction"], v["bidder"], v["price"], v["ts"]) for v in values]
    if q == "q2":
        return [(v["auction"], v["price"]) for v in values]
    if q == "q3":
        return [(v["name"], v["city"], v["state"], v["id"]) for v in values]
    if q == "q4":
        last = {}
        for v in values:
            if v["category"] not in last or v["count"] > last[v["category"]]["count"]:
                last[v["category"]] = v
        return [(c, round(v["avg"] * v["count"]) // v["count"]) for c, v in last.items()]
    if q == "q5":
        return [(v["auction"], v["num"]) for v in values]
    if q == "q7":
        return [(v["auction"], v["price"], v["bidder"], v["ts"]) for v in values]
    if q == "q8":
        return [(v["id"], v["name"], v["window_start"]) for v in values]
    if q == "q11":
        return [(v["bidder"], v["bid_count"], v["start"], v["end"]) for v in values]
    raise ValueError(q)


def close_pairs(only_w, only_f):
    """Of the rows only one side has, those that differ only in float fields
    within a relative 1e-9: paired and taken out of both. Returns the count."""
    def split(row):
        return (tuple(x for x in row if not isinstance(x, float)),
                tuple(x for x in row if isinstance(x, float)))

    groups = defaultdict(lambda: ([], []))
    for side, rows in ((0, only_w), (1, only_f)):
        for row in rows.elements():
            key, floats = split(row)
            if floats:
                groups[key][side].append((floats, row))
    paired = 0
    for ws, fs in groups.values():
        ws.sort()
        fs.sort()
        for (wf, wrow), (ff, frow) in zip(ws, fs):
            if all(math.isclose(a, b, rel_tol=1e-9) for a, b in zip(wf, ff)):
                only_w[wrow] -= 1
                only_f[frow] -= 1
                paired += 1
    only_w += Counter()  # drops the zero counts
    only_f += Counter()
    return paired


def q7_edge(only_f, values):
    """Flink-only q7 rows for a bid at exactly the end of a window whose
    highest price (by weir) it matches: Flink's closed BETWEEN, taken out."""
    highest = {v["window_end"]: v["price"] for v in values}
    edge = Counter({r: n for r, n in only_f.items()
                    if r[3] % WINDOW_MS == 0 and highest.get(r[3]) == r[1]})
    only_f -= edge
    return sum(edge.values())


def compare(q, values, flink):
    w, f = Counter(weir_rows(q, values)), Counter(flink)
    only_w, only_f = w - f, f - w
    notes = []
    close = close_pairs(only_w, only_f)
    if close:
        notes.append(f"{close} equal within 1e-9")
    if q == "q7":
        notes.append(f"{q7_edge(only_f, values)} edge")
    agree = not only_w and not only_f
    return {"weir": sum(w.values()), "flink": sum(f.values()), "agree": agree,
            "only_weir": sorted(only_w.elements())[:SHOW], "n_only_weir": sum(only_w.values()),
            "only_flink": sorted(only_f.elements())[:SHOW], "n_only_flink": sum(only_f.values()),
            "notes": notes}


def run_weir_job(weir, q, events, work, guests, delay_ms, parallelism):
    """The example job as run.py makes it, with a file sink again."""
    job = run.weir_job(q, events, work, guests)
    out = work / "output" / f"{q}-p{parallelism}.jsonl"
    out.parent.mkdir(exist_ok=True)
    out.unlink(missing_ok=True)
    text = job.read_text()
    text = re.sub(r"watermark_delay_ms = \d+", f"watermark_delay_ms = {delay_ms}", text)
    text = text.replace('kind = "discard"\n', f'kind = "file"\npath = "{out}"\n')
    job.write_text(text)
    run.run_weir(weir, job, parallelism, work, guests, events)
    return [json.loads(line) for line in out.read_text().splitlines()]


def run_flink_query(q, events, work, delay_ms):
    out = work / "output" / f"{q}-flink.jsonl"
    out.parent.mkdir(exist_ok=True)
    cmd = [str(run.FLINK_PYTHON), str(Path(__file__).parent / "flink_query.py"),
           str(events), q, "--parallelism", "1", "--watermark-delay-ms", str(delay_ms),
           "--collect", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"flink {q} failed:\n{r.stderr[-3000:]}")
    return [tuple(json.loads(line)) for line in out.read_text().splitlines()]


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--weir", required=True, help="the weir binary")
    p.add_argument("--guests", required=True, help="directory of nexmark_q*.wasm")
    p.add_argument("--work", default=None, help="directory for the file, jobs and outputs")
    p.add_argument("--input", default=None,
                   help="compare on this event file instead of generating one")
    p.add_argument("--events", type=int, default=200_000)
    p.add_argument("--events-per-second", type=int, default=10_000)
    p.add_argument("--disorder-ms", type=int, default=0)
    p.add_argument("--seed", type=int, default=0, help="the generator's seed")
    p.add_argument("--watermark-delay-ms", type=int, default=None,
                   help="both sides' watermark delay (default: max(1000, --disorder-ms))")
    p.add_argument("--parallelism", default="1,2", help="weir's, comma-separated")
    p.add_argument("--queries", default=",".join(QUERIES))
    args = p.parse_args()
    queries = args.queries.split(",")
    for q in queries:
        if q not in QUERIES:
            sys.exit(f"unknown query {q}; comparable: {', '.join(QUERIES)}")
    if not run.flink_installed():
        sys.exit(f"Flink is not installed ({run.VENV}); run.py --install-flink installs it")
    delay = args.watermark_delay_ms
    if delay is None:
        delay = max(1000, args.disorder_ms)
    guests = Path(args.guests).resolve()
    work = Path(args.work or tempfile.mkdtemp(prefix="nexmark-compare-")).resolve()
    work.mkdir(parents=True, exist_ok=True)
    events = work / (f"events-{args.events}-r{args.events_per_second}-d{args.disorder_ms}"
                     f"-s{args.seed}.jsonl")
    if args.input:
        events = Path(args.input).resolve()
    elif not events.exists():
        run.log(f"generating {args.events} events into {events}")
        subprocess.run([args.weir, "nexmark", "--events", str(args.events),
                        "--events-per-second", str(args.events_per_second),
                        "--disorder-ms", str(args.disorder_ms), "--seed", str(args.seed),
                        "--out", str(events)], check=True)

    ok = True
    print(f"{events.name}, watermark delay {delay} ms")
    print("| query | weir p | weir rows | Flink rows | only weir | only Flink | notes | agree |")
    print("|---|---|---|---|---|---|---|---|")
    details = []
    for q in queries:
        flink = run_flink_query(q, events, work, delay)
        for par in [int(x) for x in args.parallelism.split(",")]:
            values = run_weir_job(args.weir, q, events, work, guests, delay, par)
            r = compare(q, values, flink)
            ok &= r["agree"]
            print(f"| {q} | {par} | {r['weir']} | {r['flink']} | {r['n_only_weir']} "
                  f"| {r['n_only_flink']} | {', '.join(r['notes']) or '-'} "
                  f"| {'yes' if r['agree'] else 'NO'} |", flush=True)
            if not r["agree"]:
                details.append(f"{q} p={par}: only weir {r['only_weir']}, "
                               f"only Flink {r['only_flink']}")
    for d in details:
        print(d)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
