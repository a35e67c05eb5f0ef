"""A private PostgreSQL, and the Redis a Prefect server of several processes needs, for the tests
and benchmarks: each in a fresh directory, bound to 127.0.0.1 on a given port, removed on stop.

PostgreSQL refuses to run as root, and CI runs as root: there the server runs as the ``postgres``
user that Debian's package creates (``runuser -u postgres``), in a directory that user owns under
``/tmp`` (a pytest ``tmp_path`` is private to root). As any other user it runs as that user.
Clients log in over TCP with a generated password, so they need no particular Unix user.
"""

from __future__ import annotations

import contextlib
import glob
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from fleetflow.errors import TestbedError
from fleetflow.polling import poll_until
from fleetflow.testbed import packages

START_TIMEOUT = 30.0
USER = "fleetflow"
DATABASE = "prefect"


def _bin(name: str) -> str:
    """A PostgreSQL server program: on PATH, or where Debian keeps it (not on PATH)."""
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=_major, reverse=True)
    if not candidates:
        packages.require("postgresql")
        raise TestbedError(f"PostgreSQL's {name} is not installed: put its bin directory on PATH")
    return candidates[0]


def _major(path: str) -> int:
    version = Path(path).parent.parent.name
    return int(version) if version.isdigit() else 0


def _as_server_user(args: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return args
    if shutil.which("runuser") is None:
        raise TestbedError("PostgreSQL cannot run as root and `runuser` is missing")
    return ["runuser", "-u", "postgres", "--", *args]


def _run(args: list[str], what: str, env: dict[str, str] | None = None) -> None:
    done = subprocess.run(
        args, capture_output=True, text=True, stdin=subprocess.DEVNULL, env=env, check=False
    )
    if done.returncode:
        last = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise TestbedError(f"{what} failed: {last[0]}")


def _accepts(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        return True
    return False


def _refuse_taken(port: int, what: str) -> None:
    if _accepts(port):
        raise TestbedError(f"port {port} for the test {what} is already in use: stop what holds it")


@dataclass(frozen=True)
class LocalPostgres:
    """A running private PostgreSQL with one database for Prefect."""

    directory: Path
    port: int
    password: str

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def url(self) -> str:
        return f"postgresql://{USER}:{self.password}@127.0.0.1:{self.port}/{DATABASE}"


def start_postgres(port: int) -> LocalPostgres:
    """initdb a fresh cluster, start it and create the ``prefect`` database."""
    _refuse_taken(port, "PostgreSQL")
    directory = Path(tempfile.mkdtemp(prefix="fleetflow-pg-"))
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres", "postgres")
    pg = LocalPostgres(directory=directory, port=port, password=secrets.token_urlsafe(16))
    password_file = directory / "password"
    password_file.write_text(pg.password)
    if os.geteuid() == 0:
        shutil.chown(password_file, "postgres", "postgres")
    _run(
        _as_server_user(
            [
                _bin("initdb"),
                "--pgdata",
                str(pg.data),
                "--username",
                USER,
                f"--pwfile={password_file}",
                "--auth=scram-sha-256",
                "--encoding=UTF8",
                "--no-sync",  # a throwaway cluster: its files need not survive a power cut
            ]
        ),
        "initdb",
    )
    password_file.unlink()
    options = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={directory}"
    try:
        _run(
            _as_server_user(
                [
                    _bin("pg_ctl"),
                    "--pgdata",
                    str(pg.data),
                    "--log",
                    str(directory / "postgres.log"),
                    "--options",
                    options,
                    "--wait",
                    f"--timeout={int(START_TIMEOUT)}",
                    "start",
                ]
            ),
            f"starting PostgreSQL (see {directory / 'postgres.log'})",
        )
        _run(
            [_bin("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", USER, DATABASE],
            "createdb",
            env=dict(os.environ, PGPASSWORD=pg.password),
        )
    except TestbedError:
        stop_postgres(pg)
        raise
    return pg


def stop_postgres(pg: LocalPostgres) -> None:
    """Stop the server (fast: open sessions are ended) and remove its directory."""
    if (pg.data / "postmaster.pid").exists():
        _run(
            _as_server_user(
                [_bin("pg_ctl"), "--pgdata", str(pg.data), "--mode=fast", "--wait", "stop"]
            ),
            "stopping PostgreSQL",
        )
    shutil.rmtree(pg.directory, ignore_errors=True)


@contextlib.contextmanager
def postgres(port: int) -> Iterator[LocalPostgres]:
    pg = start_postgres(port)
    try:
        yield pg
    finally:
        stop_postgres(pg)


@contextlib.contextmanager
def redis(port: int) -> Iterator[str]:
    """A private Redis without persistence; yields its URL."""
    packages.require("redis-server")
    server = shutil.which("redis-server") or "redis-server"
    _refuse_taken(port, "Redis")
    directory = Path(tempfile.mkdtemp(prefix="fleetflow-redis-"))
    args = [server, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--dir"]
    with (directory / "redis.log").open("ab") as log:
        proc = subprocess.Popen(
            [*args, str(directory), "--appendonly", "no"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        poll_until(
            lambda: proc.poll() is None and _accepts(port),
            bool,
            timeout=START_TIMEOUT,
            waiting_for=f"Redis on 127.0.0.1:{port}",
            hint=f"see {directory / 'redis.log'}",
        )
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
        shutil.rmtree(directory, ignore_errors=True)
