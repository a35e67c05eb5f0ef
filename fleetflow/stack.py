"""The local stack behind ``fleetflow up``: a Prefect server (on SQLite, or on PostgreSQL), a
process work pool with a worker, and the test bed. Processes are started detached and tracked by
pid files under ``<home>/run`` (``$FLEETFLOW_HOME`` by default) so that ``fleetflow down`` stops
exactly what ``up`` started.

A server of several API processes (``api_workers`` > 1) is Prefect's multi-worker mode: it needs
PostgreSQL, and Redis for the events, the causal ordering, the concurrency leases and the
background tasks that the processes share (with Prefect's in-memory defaults an event sent to one
process would never reach the services of another). In that mode the API processes run no
services, so the stack starts them as a process of their own (``services``).

This module runs the ``prefect`` command; it does not import Prefect (the core stays free of it).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit

import asyncpg  # type: ignore[import-untyped]
import httpx

from fleetflow.errors import FleetflowError, StackError, WaitTimeout
from fleetflow.polling import poll_until
from fleetflow.prefect_api import call
from fleetflow.settings import settings

Progress = Callable[[str], None]
WORK_POOL = "fleetflow"
WORKER_NAME = "fleetflow-local"
DEFAULT_PORT = 4200
PROJECT_ROOT = Path(__file__).resolve().parent.parent


# Prefect's own names for its database URL; the first is the one Prefect documents.
DATABASE_SETTINGS = (
    "PREFECT_API_DATABASE_CONNECTION_URL",
    "PREFECT_SERVER_DATABASE_CONNECTION_URL",
)
POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+asyncpg")
CONNECT_TIMEOUT = 5.0


def _home() -> Path:
    return settings().home


def mask(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``: the only form that is printed."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user, _, host = parts.netloc.rpartition("@")
    name = user.partition(":")[0]
    return SplitResult(parts.scheme, f"{name}:***@{host}", *parts[2:]).geturl()


@dataclass(frozen=True)
class Database:
    """A PostgreSQL database for Prefect's server, as ``postgresql://USER:PASSWORD@HOST:PORT/DB``
    (``postgresql+asyncpg://``, Prefect's own spelling, is taken too). Its ``str`` is masked."""

    url: str = field(repr=False)

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in POSTGRES_SCHEMES or not parts.hostname:
            raise StackError(
                f"--database must be a PostgreSQL URL (postgresql://USER:PASSWORD@HOST:PORT/"
                f"DATABASE), not {mask(self.url)!r}"
            )

    def __str__(self) -> str:
        return mask(self.url)

    def __repr__(self) -> str:
        return f"Database({str(self)!r})"

    @property
    def _rest(self) -> str:
        return self.url.partition("://")[2]

    @property
    def prefect_url(self) -> str:
        """The URL in the form Prefect's server wants: SQLAlchemy with the asyncpg driver."""
        return f"postgresql+asyncpg://{self._rest}"

    def check(self, timeout: float = CONNECT_TIMEOUT) -> None:
        """Log in once, so that a wrong host, password or database name is one line now and
        not a server that dies at start."""

        async def login() -> None:
            connection = await asyncpg.connect(f"postgresql://{self._rest}", timeout=timeout)
            await connection.close()

        try:
            asyncio.run(login())
        # OSError covers refused, unresolvable and timed out; asyncpg's, a refused login or a
        # database that does not exist.
        except (OSError, ValueError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            password = urlsplit(self.url).password
            reason = str(exc) or type(exc).__name__
            if password:
                for secret in (password, unquote(password)):  # as given, and as asyncpg read it
                    reason = reason.replace(secret, "***")
            raise StackError(f"cannot use PostgreSQL at {self}: {reason}") from None

    @classmethod
    def from_environment(cls) -> Database | None:
        """The PostgreSQL database Prefect's own setting names, if it names one (a SQLite URL
        there is left to Prefect)."""
        for name in DATABASE_SETTINGS:
            url = os.environ.get(name)
            if url and urlsplit(url).scheme in POSTGRES_SCHEMES:
                return cls(url)
        return None


@dataclass(frozen=True)
class Stack:
    """The Prefect API the stack's processes talk to, and the home that keeps their state (pid
    files, logs, the server's SQLite). ``fleetflow up`` serves the API itself on 127.0.0.1; a
    test points a worker at its own server and home. With a ``database`` the server keeps its
    state in PostgreSQL instead; ``api_workers`` > 1 also needs ``redis`` (a ``redis://`` URL)."""

    api_url: str = f"http://127.0.0.1:{DEFAULT_PORT}/api"
    home: Path = field(default_factory=_home)
    database: Database | None = None
    api_workers: int = 1
    redis: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.api_workers < 1:
            raise StackError(f"--api-workers must be at least 1, not {self.api_workers}")
        if self.api_workers == 1:
            if self.redis is not None:
                raise StackError("--redis is for a server of several processes: --api-workers N")
            return
        if self.database is None:
            raise StackError("--api-workers > 1 needs PostgreSQL: pass --database")
        if self.redis is None or urlsplit(self.redis).scheme not in ("redis", "rediss"):
            raise StackError("--api-workers > 1 needs Redis: pass --redis redis://HOST:PORT/DB")
        if importlib.util.find_spec("prefect_redis") is None:
            raise StackError("--api-workers > 1 needs the prefect-redis package: `make install`")

    @classmethod
    def local(
        cls,
        port: int = DEFAULT_PORT,
        database: str | None = None,
        api_workers: int = 1,
        redis: str | None = None,
    ) -> Stack:
        """The stack ``fleetflow up`` serves on 127.0.0.1: on the given PostgreSQL, else on the
        one Prefect's own setting names, else on SQLite under the home."""
        return cls(
            api_url=f"http://127.0.0.1:{port}/api",
            database=Database(database) if database else Database.from_environment(),
            api_workers=api_workers,
            redis=redis,
        )

    def check(self) -> None:
        """Reach the database and Redis before anything starts; each failure is one line."""
        if self.database is not None:
            self.database.check()
        if self.redis is not None:
            parts = urlsplit(self.redis)
            try:
                socket.create_connection(
                    (parts.hostname or "127.0.0.1", parts.port or 6379), timeout=CONNECT_TIMEOUT
                ).close()
            except OSError as exc:
                raise StackError(f"cannot reach Redis at {mask(self.redis)}: {exc}") from None

    @property
    def storage(self) -> str:
        """Where the server keeps its state, as printed (never with a password)."""
        if self.database is None:
            return f"SQLite in {self.prefect_home}"
        return f"PostgreSQL at {self.database}"

    @property
    def host(self) -> str:
        return urlsplit(self.api_url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        return urlsplit(self.api_url).port or DEFAULT_PORT

    @property
    def ui_url(self) -> str:
        return self.api_url.removesuffix("/").removesuffix("/api")

    @property
    def prefect_home(self) -> Path:
        return self.home / "prefect"

    def env(self) -> dict[str, str]:
        """Environment for every process of the stack: its own Prefect home and API, and INFO
        logs sent to the API. Log levels are not inherited: a caller that quiets its own console
        (``fleetflow up`` does) must not leave every run the worker starts without logs."""
        inherited = {
            name: value
            for name, value in os.environ.items()
            if not (name.startswith("PREFECT_LOGGING_") and name.endswith("LEVEL"))
            # Only the server needs the database's password; runs must not inherit it.
            and name not in DATABASE_SETTINGS
        }
        return dict(
            inherited,
            PREFECT_HOME=str(self.prefect_home),
            PREFECT_API_URL=self.api_url,
            PREFECT_SERVER_API_HOST=self.host,
            PREFECT_SERVER_API_PORT=str(self.port),
            PREFECT_UI_API_URL=self.api_url,
            PREFECT_LOGGING_LEVEL="INFO",
            PREFECT_LOGGING_TO_API_ENABLED="true",
            # An air-gapped install must not log "Failed to send telemetry" every few minutes.
            PREFECT_SERVER_ANALYTICS_ENABLED="false",
        )

    def worker_env(self) -> dict[str, str]:
        """Environment for the worker: :meth:`env`, polling for runs to start every
        ``worker_poll_seconds`` and its runs beating every ``heartbeat_seconds`` (Prefect's own
        variables, when set, win)."""
        env = self.env()
        env.setdefault("PREFECT_WORKER_QUERY_SECONDS", f"{settings().worker_poll_seconds:g}")
        env.setdefault(HEARTBEAT_SETTING, str(settings().heartbeat_seconds))
        return env

    def server_env(self) -> dict[str, str]:
        """Environment for the server's processes: :meth:`env`, the retention of what the
        server keeps, the database, and for several API processes the Redis-backed parts of
        Prefect they must share."""
        env = self.env()
        for name, value in {**retention(), **recording()}.items():
            env.setdefault(name, value)  # Prefect's own variable, when set, wins
        if self.database is not None:
            env[DATABASE_SETTINGS[0]] = self.database.prefect_url
        if self.api_workers > 1 and self.redis is not None:
            env.update(
                PREFECT_MESSAGING_BROKER="prefect_redis.messaging",
                PREFECT_MESSAGING_CACHE="prefect_redis.messaging",
                PREFECT_SERVER_EVENTS_CAUSAL_ORDERING="prefect_redis.ordering",
                PREFECT_SERVER_CONCURRENCY_LEASE_STORAGE="prefect_redis.lease_storage",
                PREFECT_REDIS_MESSAGING_URL=self.redis,
                PREFECT_SERVER_DOCKET_URL=self.redis,
                # start_server does both once, before the API processes start.
                PREFECT_API_DATABASE_MIGRATE_ON_START="false",
                PREFECT_API_BLOCKS_REGISTER_ON_START="false",
            )
        return env

    def run_dir(self) -> Path:
        path = self.home / "run"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def log_path(self, name: str) -> Path:
        return self.home / "logs" / f"{name}.log"


def retention() -> dict[str, str]:
    """Prefect's settings for how long the server keeps events and finished runs. A stack that
    runs for weeks must not grow for weeks: Prefect keeps events 7 days and runs for ever."""
    day = 24 * 3600
    events = int(settings().event_retention_days * day)
    return {
        # An ISO 8601 duration: Prefect reads this one as a timedelta, not as seconds.
        "PREFECT_SERVER_EVENTS_RETENTION_PERIOD": f"PT{events}S",
        # "flow_runs" deletes finished runs older than the period, with their task runs, and
        # then their orphaned logs and artifacts.
        "PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED": "events,flow_runs",
        "PREFECT_SERVER_SERVICES_DB_VACUUM_RETENTION_PERIOD": str(
            int(settings().run_retention_days * day)
        ),
    }


def recording() -> dict[str, str]:
    """Prefect's settings for how the server records task runs. By default it writes each
    task-run state event with statements of its own (a batch of one): most of the server's
    work under fleetflow's flows, whose runs are many short tasks. In batches of up to 100,
    flushed every second, the server took a fifth less CPU over the same tests (measured), and
    a task run still shows within a second of its state changing."""
    prefix = "PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_"
    return {
        f"{prefix}BATCH_SIZE": "100",
        f"{prefix}READ_BATCH_SIZE": "100",
        f"{prefix}FLUSH_INTERVAL": "1",
    }


def _prefect() -> str:
    exe = Path(sys.executable).with_name("prefect")
    found = str(exe) if exe.exists() else shutil.which("prefect")
    if not found:
        raise StackError("the `prefect` command is not installed: run `make install`")
    return found


def _alive(stack: Stack, name: str) -> int | None:
    try:
        pid = int((stack.home / "run" / f"{name}.pid").read_text())
    except (OSError, ValueError):
        return None
    return pid if _pid_alive(pid) else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def running(stack: Stack, name: str) -> bool:
    """Whether the stack's process ``name`` (server, services, worker) runs."""
    return _alive(stack, name) is not None


def _spawn(stack: Stack, name: str, args: list[str], env: dict[str, str] | None = None) -> int:
    log = stack.log_path(name)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            args,
            env=env or stack.env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=PROJECT_ROOT,
        )
    (stack.run_dir() / f"{name}.pid").write_text(str(proc.pid))
    return proc.pid


def _run(args: list[str], what: str, env: dict[str, str]) -> None:
    done = subprocess.run(
        args, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL, cwd=PROJECT_ROOT
    )
    if done.returncode:
        last = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise StackError(f"{what} failed: {last[0]}")


def _prefect_command(stack: Stack, *args: str) -> None:
    """Run one ``prefect`` command against the stack; a failure is one line with its output."""
    _run([_prefect(), *args], f"`prefect {' '.join(args)}`", stack.env())


# What every API process does as it starts: migrate the database, register Prefect's block
# types. Several processes doing it at once on a new database race (duplicate keys) and uvicorn
# stops the whole server, so a server of several processes has it done once, before, with these
# steps off in the processes. Prefect has a command for the first step only.
PREPARE_DATABASE = """
import asyncio
from prefect.server.database import provide_database_interface
from prefect.server.models.block_registration import run_block_auto_registration

async def prepare():
    db = provide_database_interface()
    await db.create_db()
    async with await db.session() as session:
        await run_block_auto_registration(session=session)

asyncio.run(prepare())
"""


def healthy(stack: Stack) -> bool:
    try:
        return httpx.get(f"{stack.api_url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _wait_healthy(stack: Stack, timeout: float = 90) -> None:
    def answers() -> bool:
        if healthy(stack):
            return True
        if _alive(stack, "server") is None:
            raise StackError(f"the Prefect server exited; see {stack.log_path('server')}")
        return False

    poll_until(
        answers,
        bool,
        timeout=timeout,
        interval=0.5,
        waiting_for=f"the Prefect server at {stack.ui_url}",
        hint=f"see {stack.log_path('server')}",
    )


def start(stack: Stack, progress: Progress = print) -> list[str]:
    """Start what is not running yet; return the names of the processes started now."""
    started = []
    if start_server(stack, progress):
        started.append("server")
    try:
        if start_services(stack, progress):
            started.append("services")
        register_blocks(stack)
        ensure_work_pool(stack, progress)
        deploy(stack, progress)
        if start_worker(stack, progress):
            started.append("worker")
    except BaseException:
        for name in reversed(started):
            stop(stack, name, progress)
        raise
    return started


def start_server(stack: Stack, progress: Progress = print) -> bool:
    if _alive(stack, "server") and healthy(stack):
        progress(f"Prefect server already running at {stack.ui_url}")
        return False
    if healthy(stack):
        raise StackError(
            f"another Prefect server already answers on {stack.ui_url}: stop it or pass --port"
        )
    processes = f", {stack.api_workers} API processes" if stack.api_workers > 1 else ""
    progress(f"starting the Prefect server at {stack.ui_url} ({stack.storage}{processes})")
    args = [_prefect(), "server", "start", "--host", stack.host, "--port", str(stack.port)]
    if stack.api_workers > 1:
        args += ["--workers", str(stack.api_workers)]
        progress("migrating the database")
        _run([sys.executable, "-c", PREPARE_DATABASE], "migrating the database", stack.server_env())
    _spawn(stack, "server", args, stack.server_env())
    try:
        _wait_healthy(stack)
    except FleetflowError:
        stop(stack, "server", progress)
        raise
    return True


def start_services(stack: Stack, progress: Progress = print) -> bool:
    """Prefect's services (scheduler, automations, event and task-run recorders...) as a process
    of their own, for a server whose API processes run none; otherwise the server runs them."""
    if stack.api_workers == 1:
        return False
    if _alive(stack, "services"):
        progress("Prefect services already running")
        return False
    progress("starting the Prefect services (scheduler, automations, recorders)")
    _spawn(stack, "services", [_prefect(), "server", "services", "start"], stack.server_env())
    return True


def ensure_work_pool(stack: Stack, progress: Progress = print) -> None:
    found = httpx.get(f"{stack.api_url}/work_pools/{WORK_POOL}", timeout=10)
    if found.status_code == 200:
        return
    progress(f"creating the process work pool {WORK_POOL!r}")
    _prefect_command(stack, "work-pool", "create", WORK_POOL, "--type", "process")


ORPHANED = (
    "its process was gone (the worker or the machine stopped while it ran); marked Crashed by "
    "fleetflow so that its deployment's concurrency slot is free again"
)


def _unfinished_runs(stack: Stack) -> list[dict[str, Any]]:
    """The runs of the stack's work pool that are Pending, Running or Cancelling."""
    query = {
        "work_pools": {"name": {"any_": [WORK_POOL]}},
        "flow_runs": {"state": {"type": {"any_": ["PENDING", "RUNNING", "CANCELLING"]}}},
        "limit": 200,
    }
    found = httpx.post(f"{stack.api_url.rstrip('/')}/flow_runs/filter", json=query, timeout=30)
    found.raise_for_status()
    runs: list[dict[str, Any]] = found.json()
    return runs


def crash_orphans(stack: Stack, progress: Progress = print) -> list[str]:
    """Mark Crashed the runs of the stack's work pool that are Pending, Running or Cancelling
    while no process runs them: their worker was stopped (``fleetflow down``) or the machine
    went down. Prefect would show them running for ever, ``up`` would take an orphaned health
    watcher for a live one, and a run that held its deployment's concurrency slot (rebalance,
    failover...) would hold it for ever, so that no later run of that deployment starts. Call
    it while no worker of the stack runs. Returns the names of the runs it marked."""
    api = stack.api_url.rstrip("/")
    crashed = []
    for run in _unfinished_runs(stack):
        if _process_alive(run.get("infrastructure_pid")):
            continue
        state = {"type": "CRASHED", "name": "Crashed", "message": ORPHANED}
        httpx.post(
            f"{api}/flow_runs/{run['id']}/set_state",
            json={"state": state, "force": True},
            timeout=30,
        ).raise_for_status()
        crashed.append(str(run["name"]))
    if crashed:
        progress(f"marked Crashed, their process being gone: {', '.join(crashed)}")
    return crashed


def stop_runs(stack: Stack, progress: Progress = print, timeout: float = 20) -> list[str]:
    """Stop the processes of the stack's runs that still run: a process worker starts each
    flow run in a session of its own, so stopping the worker leaves them running (measured: a
    health watcher outlived ``fleetflow down`` by minutes and probed the next ``up``'s clusters
    with the last one's tokens, and ``up`` took it for a live watcher). SIGTERM to each run's
    session, SIGKILL to what is left after ``timeout``; :func:`crash_orphans` then marks them.
    Returns the names of the runs it stopped."""
    sessions = {}
    for run in _unfinished_runs(stack):
        pid = _session_of(run.get("infrastructure_pid"))
        if pid is not None:
            sessions[pid] = str(run["name"])
    if not sessions:
        return []
    progress(f"stopping the runs still running: {', '.join(sorted(sessions.values()))}")
    _stop_sessions(list(sessions), timeout, "the runs' processes to exit")
    return sorted(sessions.values())


def _session_of(infrastructure_pid: str | None) -> int | None:
    """The run's process when it is alive here and leads a session of its own (as the worker
    starts it): never a process that merely reuses a recorded pid inside another session."""
    pid = _recorded_pid(infrastructure_pid)
    try:
        return pid if pid is not None and _pid_alive(pid) and os.getsid(pid) == pid else None
    except (ProcessLookupError, PermissionError):
        return None


def _process_alive(infrastructure_pid: str | None) -> bool:
    """Whether the process a run's worker recorded runs here."""
    pid = _recorded_pid(infrastructure_pid)
    return pid is not None and _pid_alive(pid)


def _recorded_pid(infrastructure_pid: str | None) -> int | None:
    """The pid a run's worker recorded (``PID`` or ``HOST:PID``), if any."""
    try:
        return int(str(infrastructure_pid).rpartition(":")[2])
    except ValueError:
        return None


def start_worker(stack: Stack, progress: Progress = print) -> bool:
    if _alive(stack, "worker"):
        progress("worker already running")
        return False
    crash_orphans(stack, progress)
    progress(f"starting a worker for pool {WORK_POOL!r}")
    _spawn(
        stack,
        "worker",
        [_prefect(), "worker", "start", "--pool", WORK_POOL, "--name", WORKER_NAME],
        stack.worker_env(),
    )
    return True


def deploy(stack: Stack, progress: Progress = print) -> None:
    """Create or update the deployments of ``deployments/prefect.yaml`` (idempotent)."""
    progress("applying the deployments of deployments/prefect.yaml")
    prefect_file = PROJECT_ROOT / "deployments" / "prefect.yaml"
    _prefect_command(stack, "--no-prompt", "deploy", "--all", "--prefect-file", str(prefect_file))
    ensure_automations(stack, progress)


HEARTBEAT_SETTING = "PREFECT_FLOWS_HEARTBEAT_FREQUENCY"
UNRESPONSIVE = "crash runs that stopped sending heartbeats"
SILENT = (
    "no heartbeat for {seconds}s: its process is gone (killed, out of memory, or its machine "
    "stopped) and nothing else can end it; marked Crashed by fleetflow's automation so that the "
    "UI tells the truth and its deployment's concurrency slot is free again"
)


def unresponsive_automation(heartbeat: int) -> dict[str, Any]:
    """Prefect's documented automation for runs that stopped beating (Prefect Cloud manages
    one; a self-hosted server has none): a run silent for three of its heartbeats after one,
    without ending, is marked Crashed with why."""
    seconds = 3 * heartbeat
    return {
        "name": UNRESPONSIVE,
        "description": "A flow run killed outright (SIGKILL, out of memory, its machine gone) "
        "shows Running for ever otherwise; fleetflow's runs beat every "
        f"{heartbeat}s.",
        "enabled": True,
        "trigger": {
            "type": "event",
            "posture": "Proactive",
            "match": {"prefect.resource.id": "prefect.flow-run.*"},
            "for_each": ["prefect.resource.id"],
            "after": ["prefect.flow-run.heartbeat"],
            "expect": [
                "prefect.flow-run.heartbeat",
                "prefect.flow-run.Completed",
                "prefect.flow-run.Failed",
                "prefect.flow-run.Cancelled",
                "prefect.flow-run.Crashed",
            ],
            "threshold": 1,
            "within": seconds,
        },
        "actions": [
            {
                "type": "change-flow-run-state",
                "state": "CRASHED",
                "name": "Crashed",
                "message": SILENT.format(seconds=seconds),
            }
        ],
    }


def ensure_automations(stack: Stack, progress: Progress = print) -> None:
    """Create fleetflow's own automations, or bring them up to date (by name: a second call
    with nothing changed writes nothing)."""
    wanted = unresponsive_automation(settings().heartbeat_seconds)
    with httpx.Client(base_url=stack.api_url.rstrip("/") + "/", timeout=30) as http:
        query = {"automations": {"name": {"any_": [wanted["name"]]}}}
        found = call(http, "POST", "automations/filter", json=query).json()
        if not found:
            progress(f"creating the automation {wanted['name']!r}")
            call(http, "POST", "automations/", json=wanted)
        elif _differs(found[0], wanted):
            call(http, "PUT", f"automations/{found[0]['id']}", json=wanted)


def _differs(live: dict[str, Any], wanted: dict[str, Any]) -> bool:
    """Whether the server's automation says something else than ``wanted`` (read back, the
    trigger's sets come as lists and its window as seconds)."""

    def norm(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: norm(v) for k, v in value.items()}
        if isinstance(value, list):
            return sorted(map(norm, value), key=repr)
        return value

    trigger, action = live.get("trigger") or {}, (live.get("actions") or [{}])[0]
    seen = {
        "trigger": {k: trigger.get(k) for k in wanted["trigger"]},
        "action": {k: action.get(k) for k in wanted["actions"][0]},
        "enabled": live.get("enabled"),
    }
    want = {"trigger": wanted["trigger"], "action": wanted["actions"][0], "enabled": True}
    return bool(norm(seen) != norm(want))


def register_blocks(stack: Stack) -> None:
    _prefect_command(stack, "block", "register", "-m", "fleetflow.blocks")


def _group_alive(pid: int) -> bool:
    # A process started by this one stays in its group as a zombie until reaped here.
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return False
    return True


def stop(stack: Stack, name: str, progress: Progress = print, timeout: float = 20) -> None:
    """Stop one process of the stack and its children (its whole session)."""
    pid = _alive(stack, name)
    if pid is not None:
        progress(f"stopping {name} (pid {pid})")
        _stop_sessions([pid], timeout, f"the {name} (pid {pid}) to exit")
    (stack.run_dir() / f"{name}.pid").unlink(missing_ok=True)


def _stop_sessions(pids: list[int], timeout: float, waiting_for: str) -> None:
    """SIGTERM to each process's session, SIGKILL to those still alive after ``timeout``."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGTERM)
    try:
        poll_until(
            lambda: [p for p in pids if _group_alive(p)],
            lambda alive: not alive,
            timeout=timeout,
            waiting_for=waiting_for,
        )
    except WaitTimeout:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
