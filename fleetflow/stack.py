"""The local stack behind ``fleetflow up``: a Prefect server on SQLite, a process work pool with
a worker, and the test bed. Processes are started detached and tracked by pid files under
``$FLEETFLOW_HOME/run`` so that ``fleetflow down`` stops exactly what ``up`` started.

This module runs the ``prefect`` command; it does not import Prefect (the core stays free of it).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from fleetflow.errors import StackError
from fleetflow.settings import settings

Progress = Callable[[str], None]
WORK_POOL = "fleetflow"
PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Stack:
    """Where the local Prefect server listens."""

    host: str = "127.0.0.1"
    port: int = 4200

    @property
    def api_url(self) -> str:
        return f"http://{self.host}:{self.port}/api"

    @property
    def ui_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        """Environment for every process of the stack: its own Prefect home and API."""
        return dict(
            os.environ,
            PREFECT_HOME=str(settings().home / "prefect"),
            PREFECT_API_URL=self.api_url,
            PREFECT_SERVER_API_HOST=self.host,
            PREFECT_SERVER_API_PORT=str(self.port),
            PREFECT_UI_API_URL=self.api_url,
        )


def _run_dir() -> Path:
    path = settings().home / "run"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _prefect() -> str:
    exe = Path(sys.executable).with_name("prefect")
    found = str(exe) if exe.exists() else shutil.which("prefect")
    if not found:
        raise StackError("the `prefect` command is not installed: run `make install`")
    return found


def _alive(name: str) -> int | None:
    try:
        pid = int((_run_dir() / f"{name}.pid").read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def _spawn(name: str, args: list[str], env: dict[str, str]) -> int:
    log = settings().home / "logs" / f"{name}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            args,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=PROJECT_ROOT,
        )
    (_run_dir() / f"{name}.pid").write_text(str(proc.pid))
    return proc.pid


def healthy(stack: Stack) -> bool:
    try:
        return httpx.get(f"{stack.api_url}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _wait_healthy(stack: Stack, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not healthy(stack):
        if _alive("server") is None:
            raise StackError(
                f"the Prefect server exited; see {settings().home / 'logs' / 'server.log'}"
            )
        if time.monotonic() > deadline:
            raise StackError(f"the Prefect server is not healthy after {timeout:g}s")
        time.sleep(0.5)


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
            stop(name, progress)
        raise
    return started


def start_server(stack: Stack, progress: Progress = print) -> bool:
    if _alive("server") and healthy(stack):
        progress(f"Prefect server already running at {stack.ui_url}")
        return False
    if healthy(stack):
        raise StackError(
            f"another Prefect server already answers on {stack.ui_url}: stop it or pass --port"
        )
    progress(
        f"starting the Prefect server at {stack.ui_url} (SQLite in {settings().home / 'prefect'})"
    )
    _spawn(
        "server",
        [_prefect(), "server", "start", "--host", stack.host, "--port", str(stack.port)],
        stack.env(),
    )
    try:
        _wait_healthy(stack)
    except StackError:
        stop("server", progress)
        raise
    return True


def ensure_work_pool(stack: Stack, progress: Progress = print) -> None:
    found = httpx.get(f"{stack.api_url}/work_pools/{WORK_POOL}", timeout=10)
    if found.status_code == 200:
        return
    progress(f"creating the process work pool {WORK_POOL!r}")
    subprocess.run(
        [_prefect(), "work-pool", "create", WORK_POOL, "--type", "process"],
        env=stack.env(),
        check=True,
        capture_output=True,
        stdin=subprocess.DEVNULL,
    )


def start_worker(stack: Stack, progress: Progress = print) -> bool:
    if _alive("worker"):
        progress("worker already running")
        return False
    progress(f"starting a worker for pool {WORK_POOL!r}")
    _spawn(
        "worker",
        [_prefect(), "worker", "start", "--pool", WORK_POOL, "--name", "fleetflow-local"],
        stack.env(),
    )
    return True


def deploy(stack: Stack, progress: Progress = print) -> None:
    """Create or update the deployments of ``deployments/prefect.yaml`` (idempotent)."""
    progress("applying the deployments of deployments/prefect.yaml")
    subprocess.run(
        [
            _prefect(),
            "--no-prompt",
            "deploy",
            "--all",
            "--prefect-file",
            str(PROJECT_ROOT / "deployments" / "prefect.yaml"),
        ],
        env=stack.env(),
        check=True,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        cwd=PROJECT_ROOT,
    )


def register_blocks(stack: Stack) -> None:
    subprocess.run(
        [_prefect(), "block", "register", "-m", "fleetflow.blocks"],
        env=stack.env(),
        check=True,
        capture_output=True,
        stdin=subprocess.DEVNULL,
    )


def stop(name: str, progress: Progress = print, timeout: float = 20) -> None:
    """Stop one process of the stack and its children (its whole session)."""
    pid = _alive(name)
    if pid is None:
        (_run_dir() / f"{name}.pid").unlink(missing_ok=True)
        return
    progress(f"stopping {name} (pid {pid})")
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    else:
        os.killpg(pid, signal.SIGKILL)
    (_run_dir() / f"{name}.pid").unlink(missing_ok=True)
