"""Runs one Nexmark query on Apache Flink SQL (PyFlink TableEnvironment,
local mini-cluster) over a JSON-lines file from `weir nexmark`, into a
blackhole sink, and prints {"query", "job_ms", "wall_ms"} as JSON.

job_ms is Flink's own net runtime of the job (JobExecutionResult), which
leaves out starting the JVM and the mini-cluster; wall_ms is the whole
process from Python's start of the job submission.

With --collect OUT it instead collects the query's final result rows
into OUT, one JSON array per line (session time zone UTC, timestamps as
ms since the epoch; an updating query's changelog, such as q4's, folded
into the rows it leaves), and prints {"query", "rows", "wall_ms"}.
benches/nexmark/compare.py uses it.

Usage: flink_query.py FILE QUERY [--parallelism N] [--watermark-delay-ms MS]
                                 [--collect OUT]
"""

import argparse
import json
import time

from pyflink.table import EnvironmentSettings, TableEnvironment

# The file's layout (weir_connectors::nexmark): one flat object per event,
# absent columns read as NULL.
EVENTS = """
CREATE TABLE events (
    event_type INT,
    ts BIGINT,
    id BIGINT,
    name STRING,
    email STRING,
    credit_card STRING,
    city STRING,
    state STRING,
    item_name STRING,
    description STRING,
    initial_bid BIGINT,
    reserve BIGINT,
    expires BIGINT,
    seller BIGINT,
    category BIGINT,
    auction BIGINT,
    bidder BIGINT,
    price BIGINT,
    channel STRING,
    url STRING,
    dt AS TO_TIMESTAMP_LTZ(ts, 3),
    WATERMARK FOR dt AS dt - INTERVAL '{delay}' SECOND
) WITH (
    'connector' = 'filesystem',
    'path' = '{path}',
    'format' = 'json'
)
"""

VIEWS = [
    """CREATE VIEW person AS SELECT id, name, email, credit_card, city, state, dt, ts
       FROM events WHERE event_type = 0""",
    """CREATE VIEW auction AS SELECT id, item_name, description, initial_bid, reserve,
       expires, seller, category, dt, ts FROM events WHERE event_type = 1""",
    """CREATE VIEW bid AS SELECT auction, bidder, price, channel, url, dt, ts
       FROM events WHERE event_type = 2""",
]

# Each query: the sink's columns and the SELECT, after Flink's own Nexmark
# queries (flink-benchmarks/nexmark), on this layout. q0 passes every event
# (as weir's q0 does), not just bids.
QUERIES = {
    "q0": (
        """event_type INT, ts BIGINT, id BIGINT, name STRING, email STRING,
           credit_card STRING, city STRING, state STRING, item_name STRING,
           description STRING, initial_bid BIGINT, reserve BIGINT, expires BIGINT,
           seller BIGINT, category BIGINT, auction BIGINT, bidder BIGINT, price BIGINT,
           channel STRING, url STRING""",
        """SELECT event_type, ts, id, name, email, credit_card, city, state, item_name,
           description, initial_bid, reserve, expires, seller, category, auction, bidder,
           price, channel, url FROM events""",
    ),
    "q1": (
        "auction BIGINT, bidder BIGINT, price DOUBLE, ts BIGINT",
        "SELECT auction, bidder, 0.908 * CAST(price AS DOUBLE), ts FROM bid",
    ),
    "q2": (
        "auction BIGINT, price BIGINT",
        "SELECT auction, price FROM bid WHERE MOD(auction, 123) = 0",
    ),
    "q3": (
        "name STRING, city STRING, state STRING, id BIGINT",
        """SELECT P.name, P.city, P.state, A.id
           FROM auction AS A INNER JOIN person AS P ON A.seller = P.id
           WHERE A.category = 10 AND (P.state = 'OR' OR P.state = 'ID' OR P.state = 'CA')""",
    ),
    "q4": (
        "category BIGINT, avg_price BIGINT",
        """SELECT Q.category, AVG(Q.final)
           FROM (
               SELECT MAX(B.price) AS final, A.category
               FROM auction A, bid B
               WHERE A.id = B.auction AND B.ts BETWEEN A.ts AND A.expires
               GROUP BY A.id, A.category
           ) Q
           GROUP BY Q.category""",
    ),
    "q5": (
        "auction BIGINT, num BIGINT",
        """SELECT AuctionBids.auction, AuctionBids.num
           FROM (
               SELECT auction, count(*) AS num, window_start AS starttime, window_end AS endtime
               FROM TABLE(HOP(TABLE bid, DESCRIPTOR(dt), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
               GROUP BY auction, window_start, window_end
           ) AS AuctionBids
           JOIN (
               SELECT max(CountBids.num) AS maxn, CountBids.starttime, CountBids.endtime
               FROM (
                   SELECT count(*) AS num, window_start AS starttime, window_end AS endtime
                   FROM TABLE(HOP(TABLE bid, DESCRIPTOR(dt), INTERVAL '2' SECOND, INTERVAL '10' SECOND))
                   GROUP BY auction, window_start, window_end
               ) AS CountBids
               GROUP BY CountBids.starttime, CountBids.endtime
           ) AS MaxBids
           ON AuctionBids.starttime = MaxBids.starttime
              AND AuctionBids.endtime = MaxBids.endtime
              AND AuctionBids.num >= MaxBids.maxn""",
    ),
    "q7": (
        "auction BIGINT, price BIGINT, bidder BIGINT, ts BIGINT",
        """SELECT B.auction, B.price, B.bidder, B.ts
           FROM bid B
           JOIN (
               SELECT MAX(price) AS maxprice, window_end AS dt
               FROM TABLE(TUMBLE(TABLE bid, DESCRIPTOR(dt), INTERVAL '10' SECOND))
               GROUP BY window_start, window_end
           ) B1
           ON B.price = B1.maxprice
           WHERE B.dt BETWEEN B1.dt - INTERVAL '10' SECOND AND B1.dt""",
    ),
    "q8": (
        "id BIGINT, name STRING, starttime TIMESTAMP(3)",
        """SELECT P.id, P.name, P.starttime
           FROM (
               SELECT id, name, window_start AS starttime, window_end AS endtime
               FROM TABLE(TUMBLE(TABLE person, DESCRIPTOR(dt), INTERVAL '10' SECOND))
               GROUP BY id, name, window_start, window_end
           ) P
           JOIN (
               SELECT seller, window_start AS starttime, window_end AS endtime
               FROM TABLE(TUMBLE(TABLE auction, DESCRIPTOR(dt), INTERVAL '10' SECOND))
               GROUP BY seller, window_start, window_end
           ) A
           ON P.id = A.seller AND P.starttime = A.starttime AND P.endtime = A.endtime""",
    ),
    "q11": (
        "bidder BIGINT, bid_count BIGINT, starttime TIMESTAMP(3), endtime TIMESTAMP(3)",
        """SELECT bidder, count(*) AS bid_count, window_start, window_end
           FROM TABLE(SESSION(TABLE bid PARTITION BY bidder, DESCRIPTOR(dt), INTERVAL '10' SECOND))
           GROUP BY bidder, window_start, window_end""",
    ),
}


def collect(env, query, select, out):
    import pandas as pd

    # Window bounds (TIMESTAMP(3)) are wall-clock times in this zone.
    env.get_config().set("table.local-time-zone", "UTC")
    started = time.monotonic()
    # Arrow batches: TableResult.collect() costs a few Py4J calls per row
    # (about 150 rows/s here). to_pandas folds a changelog into the final
    # rows itself (+I/+U add a row, -U/-D take one out, failing if absent).
    frame = env.sql_query(select).to_pandas()
    columns = []
    for name in frame.columns:
        column = frame[name]
        if pd.api.types.is_datetime64_any_dtype(column):
            # Naive timestamps are in the session zone, UTC.
            if column.dt.tz is None:
                column = column.dt.tz_localize("UTC")
            column = (column - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)
        columns.append(column.tolist())
    with open(out, "w") as f:
        for row in zip(*columns):
            f.write(json.dumps(list(row)) + "\n")
    wall_ms = (time.monotonic() - started) * 1000
    print(json.dumps({"query": query, "rows": len(frame), "wall_ms": round(wall_ms)}))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("file")
    parser.add_argument("query", choices=sorted(QUERIES))
    parser.add_argument("--parallelism", type=int, default=1)
    parser.add_argument("--watermark-delay-ms", type=int, default=1000)
    parser.add_argument("--collect", metavar="OUT", help="write the result rows to OUT")
    args = parser.parse_args()

    env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    config = env.get_config()
    config.set("parallelism.default", str(args.parallelism))
    # Keep the mini-cluster's logs out of the way of the result line.
    config.set("pipeline.name", f"nexmark-{args.query}")
    delay = f"{args.watermark_delay_ms / 1000:.3f}"
    env.execute_sql(EVENTS.format(path=args.file, delay=delay))
    for view in VIEWS:
        env.execute_sql(view)
    columns, select = QUERIES[args.query]
    if args.collect:
        collect(env, args.query, select, args.collect)
        return
    env.execute_sql(f"CREATE TABLE discard ({columns}) WITH ('connector' = 'blackhole')")
    started = time.monotonic()
    result = env.execute_sql(f"INSERT INTO discard {select}")
    job = result.get_job_client().get_job_execution_result().result()
    wall_ms = (time.monotonic() - started) * 1000
    print(
        json.dumps(
            {"query": args.query, "job_ms": job.get_net_runtime(), "wall_ms": round(wall_ms)}
        )
    )


if __name__ == "__main__":
    main()
