"""The Prefect server on PostgreSQL, served by more than one process, as the stack starts it: a
real PostgreSQL (Debian's package, a private instance), a real Redis, ``prefect server start
--workers 2`` with Prefect's services in a process of their own, and a flow run through it whose
state lands in PostgreSQL and whose task run crosses from the API processes to the services.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import asyncpg  # type: ignore[import-untyped]
import httpx
import pytest

from fleetflow import cli
from fleetflow.polling import poll_until
from fleetflow.settings import settings
from fleetflow.stack import Database, Stack, start_server, start_services, stop
from fleetflow.testbed.postgres import LocalPostgres, postgres, redis
from tests.integration.conftest import quiet

pytestmark = pytest.mark.integration

# Above the test bed's DNS ports (base + 90..93) would collide with its components: below them.
PORT_OFFSET = 75
API_WORKERS = 2
TRIVIAL_FLOW = """
from prefect import flow, task


@task
def one() -> int:
    return 1


@flow(name="on-postgres")
def on_postgres() -> int:
    return one()


if __name__ == "__main__":
    print(on_postgres(return_state=True).state_details.flow_run_id)
"""


@pytest.fixture(scope="module")
def backing() -> Iterator[tuple[LocalPostgres, str]]:
    """A private PostgreSQL and Redis for this module."""
    base = settings().test_base_port + PORT_OFFSET
    with postgres(base) as pg, redis(base + 1) as redis_url:
        yield pg, redis_url


@pytest.fixture(scope="module")
def server(
    backing: tuple[LocalPostgres, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    pg, redis_url = backing
    stack = Stack(
        api_url=f"http://127.0.0.1:{settings().test_base_port + PORT_OFFSET + 2}/api",
        home=tmp_path_factory.mktemp("postgres-stack"),
        database=Database(pg.url),
        api_workers=API_WORKERS,
        redis=redis_url,
    )
    stack.check()
    started = []
    try:
        if start_server(stack, progress=quiet):
            started.append("server")
        if start_services(stack, progress=quiet):
            started.append("services")
        yield stack
    finally:
        for name in reversed(started):
            stop(stack, name, progress=quiet)


def _children(pid: int) -> set[int]:
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):  # a process that exits meanwhile
            # "pid (comm) state ppid ...": comm may hold spaces, so split after its ")".
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(stat.parent.name))
    return found


def _serving(port: int, pids: set[int]) -> set[int]:
    """Which of ``pids`` hold an accepted (established) connection on ``port``."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].split(":")[1], 16) == port and fields[3] == "01":
            inodes.add(f"socket:[{fields[9]}]")
    serving = set()
    for pid in pids:
        with contextlib.suppress(OSError):
            if any(fd.readlink().as_posix() in inodes for fd in Path(f"/proc/{pid}/fd").iterdir()):
                serving.add(pid)
    return serving


def test_more_than_one_process_serves_the_api(server: Stack) -> None:
    parent = int((server.run_dir() / "server.pid").read_text())
    clients: list[httpx.Client] = []
    made = 0

    def connect_more() -> set[int]:
        nonlocal made
        # Each client keeps its connection open: the process that accepted it still holds it.
        for _ in range(4):
            client = httpx.Client(base_url=server.api_url, timeout=10)
            clients.append(client)
            made += 1
            assert client.get("/health").json() is True
        while len(clients) > 40:  # the latest 40 are held: a long wait opens no more than that
            clients.pop(0).close()
        # Read anew each time: uvicorn replaces a child that misses its 5-s health check, as
        # one still importing Prefect on a loaded machine can, so the pids read at the start may
        # not be those serving (CI once saw one process take every connection for 150 s).
        return _serving(server.port, _children(parent))

    try:
        # The stack is up once one process answers; on a busy machine the other may still be
        # importing Prefect for a minute and accepts nothing until it is done.
        serving = poll_until(
            connect_more,
            lambda pids: len(pids) >= API_WORKERS,
            timeout=150,
            waiting_for=f"connections accepted by {API_WORKERS} API processes",
            describe=lambda pids: f"{made} connections, all in {sorted(pids)}",
        )
    finally:
        for client in clients:
            client.close()
    assert len(serving) == API_WORKERS


def test_a_flow_run_through_it_lands_in_postgresql(
    server: Stack, backing: tuple[LocalPostgres, str], tmp_path: Path
) -> None:
    flow_file = tmp_path / "on_postgres.py"
    flow_file.write_text(TRIVIAL_FLOW)
    done = subprocess.run(
        [sys.executable, str(flow_file)],
        env=server.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    flow_run_id = done.stdout.split()[-1]

    api = httpx.Client(base_url=server.api_url, timeout=10)
    assert api.get(f"/flow_runs/{flow_run_id}").json()["state_type"] == "COMPLETED"
    # A task run reaches the database as an event: sent to an API process, recorded by the
    # services process, through Redis.
    task_runs = poll_until(
        lambda: api.post(
            "/task_runs/filter", json={"flow_runs": {"id": {"any_": [flow_run_id]}}}
        ).json(),
        lambda runs: [r.get("state_type") for r in runs] == ["COMPLETED"],
        timeout=30,
        interval=0.5,
        waiting_for="the flow's task run recorded as Completed",
    )
    assert task_runs[0]["name"].startswith("one-")

    async def stored_state() -> str:
        connection = await asyncpg.connect(backing[0].url)
        try:
            state: str = await connection.fetchval(
                "SELECT state_type FROM flow_run WHERE id = $1", uuid.UUID(flow_run_id)
            )
        finally:
            await connection.close()
        return state

    assert asyncio.run(stored_state()) == "COMPLETED"
    assert not list(server.prefect_home.glob("*.db")), "the server must not fall back to SQLite"


@pytest.mark.parametrize(
    ("userinfo", "database", "reason"),
    [
        (
            "fleetflow:wrong-password",
            "prefect",
            'password authentication failed for user "fleetflow"',
        ),
        (None, "nothing-here", 'database "nothing-here" does not exist'),
    ],
)
def test_a_refused_login_is_one_line_before_anything_starts(
    backing: tuple[LocalPostgres, str],
    userinfo: str | None,
    database: str,
    reason: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pg = backing[0]
    userinfo = userinfo or f"fleetflow:{pg.password}"
    url = f"postgresql://{userinfo}@127.0.0.1:{pg.port}/{database}"
    monkeypatch.setenv("FLEETFLOW_HOME", str(tmp_path))
    assert cli.main(["up", "--port", str(pg.port + 3), "--database", url]) == 2
    err = capsys.readouterr().err
    masked = f"postgresql://fleetflow:***@127.0.0.1:{pg.port}/{database}"
    assert err == f"error: cannot use PostgreSQL at {masked}: {reason}\n"
    assert userinfo.partition(":")[2] not in err
    assert list(tmp_path.iterdir()) == []
