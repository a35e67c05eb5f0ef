"""Soak: what a running stack leaves in Prefect's database while nothing happens, and whether a
drill still passes after it.

Against the stack `fleetflow up` runs (its FLEETFLOW_HOME; SQLite, or the PostgreSQL that
PREFECT_API_DATABASE_CONNECTION_URL names): read the database's size and row counts, leave the
stack alone for N minutes with its schedules (the health watcher, a rebalance every 5 minutes),
read them again, then start a drill through the API and wait for its verdict. Prints, per idle
hour: database growth, task runs, task-run states, flow runs, logs, events and event resources;
the events by name; the `database is locked` errors and 503 answers in the server's log during
the idle time and during the drill; the drill's verdict and time.

Run by hand, on a stack that has run for a few minutes (its first runs create blocks and
deployments): `fleetflow up`, then
    .venv/bin/python bench/bench_soak.py --minutes 30 [--region us-east] [--no-drill]
For the figures of a new database: `fleetflow down`, remove $FLEETFLOW_HOME/prefect, `fleetflow up`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]

from fleetflow.stack import Database, Stack, healthy

TABLES = ("task_run", "task_run_state", "flow_run", "log", "events", "event_resources")
LOCKED = "database is locked"
Reading = tuple[int, dict[str, int], list[tuple[str, int]]]
"""The database's size in bytes, its row counts, and the events since a time by name."""


def sqlite_path(stack: Stack) -> Path:
    return stack.prefect_home / "prefect.db"


def _sqlite_read(
    stack: Stack, since: datetime
) -> tuple[int, dict[str, int], list[tuple[str, int]]]:
    path = sqlite_path(stack)
    size = sum(p.stat().st_size for p in path.parent.glob(f"{path.name}*"))
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=60) as db:
        counts = {t: db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}
        names = db.execute(
            "SELECT event, count(*) FROM events WHERE occurred >= ? GROUP BY event "
            "ORDER BY 2 DESC LIMIT 12",
            (since.strftime("%Y-%m-%d %H:%M:%S"),),
        ).fetchall()
    return size, counts, [(str(n), int(c)) for n, c in names]


def _postgres_read(database: Database, since: datetime) -> Reading:
    async def read() -> Reading:
        db = await asyncpg.connect(database.url.replace("+asyncpg", ""))
        try:
            size = await db.fetchval("SELECT pg_database_size(current_database())")
            counts = {t: await db.fetchval(f"SELECT count(*) FROM {t}") for t in TABLES}
            rows = await db.fetch(
                "SELECT event, count(*) FROM events WHERE occurred >= $1 GROUP BY event "
                "ORDER BY 2 DESC LIMIT 12",
                since,
            )
        finally:
            await db.close()
        return int(size), counts, [(r[0], int(r[1])) for r in rows]

    return asyncio.run(read())


def read(stack: Stack, since: datetime) -> Reading:
    if stack.database is None:
        return _sqlite_read(stack, since)
    return _postgres_read(stack.database, since)


RECORD = re.compile(r"^\d\d:\d\d:\d\d\.\d+ \| ", re.M)
"""The start of a record in the server's log (a traceback follows its record's first line)."""


def log_errors(stack: Stack, offset: int) -> tuple[int, int, int]:
    """Records of the server's log after ``offset`` that are (or whose traceback is) a lock
    error, and answers 503; the log's new end."""
    path = stack.log_path("server")
    with path.open("rb") as log:
        log.seek(offset)
        text = log.read().decode(errors="replace")
        end = log.tell()
    records = RECORD.split(text)
    return sum(LOCKED in r for r in records), text.count(" 503 "), end


def log_end(stack: Stack) -> int:
    path = stack.log_path("server")
    return path.stat().st_size if path.exists() else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=30, help="idle time (default: 30)")
    parser.add_argument("--region", default="us-east", help="the drilled region")
    parser.add_argument("--federation", default="demo")
    parser.add_argument("--no-drill", action="store_true", help="measure the idle time only")
    args = parser.parse_args()

    stack = Stack.local()
    if not healthy(stack):
        print(f"no stack answers at {stack.ui_url}: start it with `fleetflow up`")
        return 2
    print(f"stack: {stack.ui_url}, {stack.storage}; idle for {args.minutes:g} min")
    started_at = datetime.now(UTC)
    size0, rows0, _ = read(stack, started_at)
    offset = log_end(stack)
    began = time.monotonic()
    deadline = began + args.minutes * 60
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, 60))
        print(f"  {(time.monotonic() - began) / 60:.0f} min", flush=True)
    hours = (time.monotonic() - began) / 3600
    size1, rows1, names = read(stack, started_at)
    locked, unavailable, offset = log_errors(stack, offset)

    print(f"\nidle {hours * 60:.1f} min, per hour:")
    print(f"  database growth      {(size1 - size0) / hours / 2**20:10.1f} MB/h")
    for table in TABLES:
        print(f"  {table:20} {(rows1[table] - rows0[table]) / hours:10.0f} /h")
    print(
        f"  'database is locked' {locked:10d} errors in the server log, {unavailable} answers 503"
    )
    print("  events by name:")
    for name, count in names:
        print(f"    {name:44} {count / hours:8.0f} /h")

    if args.no_drill:
        return 0
    command = [
        str(Path(sys.executable).with_name("fleetflow")),
        "drill",
        "--federation",
        args.federation,
        "--region",
        args.region,
        "--wait",
    ]
    print(f"\n$ {' '.join(command[1:])}", flush=True)
    t0 = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ))
    seconds = time.monotonic() - t0
    locked, unavailable, _ = log_errors(stack, offset)
    print(done.stdout.strip() or done.stderr.strip())
    verdict = "PASS" if done.returncode == 0 else f"FAIL (exit {done.returncode})"
    print(
        f"\ndrill: {verdict} in {seconds:.0f} s; during it {locked} lock errors, {unavailable} 503"
    )
    return 0 if done.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
