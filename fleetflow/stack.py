"""The local stack behind ``fleetflow up``: a Prefect server on SQLite, a process work pool with
a worker, and the test bed. Processes are started detached and tracked by pid files under
``<home>/run`` (``$FLEETFLOW_HOME`` by default) so that ``fleetflow down`` stops exactly what
``up`` started.

This module runs the ``prefect`` command; it does not import Prefect (the core stays free of it).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx

from fleetflow.errors import FleetflowError, StackError, WaitTimeout
from fleetflow.polling import poll_until
from fleetflow.settings import settings

Progress = Callable[[str], None]
WORK_POOL = "fleetflow"
WORKER_NAME = "fleetflow-local"
DEFAULT_PORT = 4200
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def _home() -> Path:
    return settings().home


@dataclass(frozen=True)
class Stack:
    """The Prefect API the stack's processes talk to, and the home that keeps their state (pid
    files, logs, the server's SQLite). ``fleetflow up`` serves the API itself on 127.0.0.1; a
    test points a worker at its own server and home."""

    api_url: str = f"http://127.0.0.1:{DEFAULT_PORT}/api"
    home: Path = field(default_factory=_home)

    @classmethod
    def local(cls, port: int = DEFAULT_PORT) -> Stack:
        return cls(api_url=f"http://127.0.0.1:{port}/api")

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

    def run_dir(self) -> Path:
        path = self.home / "run"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def log_path(self, name: str) -> Path:
        return self.home / "logs" / f"{name}.log"


def _prefect() -> str:
    exe = Path(sys.executable).with_name("prefect")
    found = str(exe) if exe.exists() else shutil.which("prefect")
    if not found:
        raise StackError("the `prefect` command is not installed: run `make install`")
    return found


def _alive(stack: Stack, name: str) -> int | None:
    try:
        pid = int((stack.run_dir() / f"{name}.pid").read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def _spawn(stack: Stack, name: str, args: list[str]) -> int:
    log = stack.log_path(name)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            args,
            env=stack.env(),
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=PROJECT_ROOT,
        )
    (stack.run_dir() / f"{name}.pid").write_text(str(proc.pid))
    return proc.pid


def _prefect_command(stack: Stack, *args: str) -> None:
    """Run one ``prefect`` command against the stack; a failure is one line with its output."""
    done = subprocess.run(
        [_prefect(), *args],
        env=stack.env(),
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        cwd=PROJECT_ROOT,
    )
    if done.returncode:
        last = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or ["no output"]
        raise StackError(f"`prefect {' '.join(args)}` failed: {last[0]}")


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
    progress(f"starting the Prefect server at {stack.ui_url} (SQLite in {stack.prefect_home})")
    _spawn(
        stack,
        "server",
        [_prefect(), "server", "start", "--host", stack.host, "--port", str(stack.port)],
    )
    try:
        _wait_healthy(stack)
    except FleetflowError:
        stop(stack, "server", progress)
        raise
    return True


def ensure_work_pool(stack: Stack, progress: Progress = print) -> None:
    found = httpx.get(f"{stack.api_url}/work_pools/{WORK_POOL}", timeout=10)
    if found.status_code == 200:
        return
    progress(f"creating the process work pool {WORK_POOL!r}")
    _prefect_command(stack, "work-pool", "create", WORK_POOL, "--type", "process")


def start_worker(stack: Stack, progress: Progress = print) -> bool:
    if _alive(stack, "worker"):
        progress("worker already running")
        return False
    progress(f"starting a worker for pool {WORK_POOL!r}")
    _spawn(
        stack,
        "worker",
        [_prefect(), "worker", "start", "--pool", WORK_POOL, "--name", WORKER_NAME],
    )
    return True


def deploy(stack: Stack, progress: Progress = print) -> None:
    """Create or update the deployments of ``deployments/prefect.yaml`` (idempotent)."""
    progress("applying the deployments of deployments/prefect.yaml")
    prefect_file = PROJECT_ROOT / "deployments" / "prefect.yaml"
    _prefect_command(stack, "--no-prompt", "deploy", "--all", "--prefect-file", str(prefect_file))


def register_blocks(stack: Stack) -> None:
    _prefect_command(stack, "block", "register", "-m", "fleetflow.blocks")


def _group_alive(pid: int) -> bool:
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
        os.killpg(pid, signal.SIGTERM)
        try:
            poll_until(
                lambda: _group_alive(pid),
                lambda alive: not alive,
                timeout=timeout,
                waiting_for=f"the {name} (pid {pid}) to exit",
            )
        except WaitTimeout:
            os.killpg(pid, signal.SIGKILL)
    (stack.run_dir() / f"{name}.pid").unlink(missing_ok=True)
