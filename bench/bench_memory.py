"""Memory held while a command runs, by role: each test bed's host and member clusters, its DNS
chain, Prefect's server, worker and flow runs, pytest, Chromium, PostgreSQL, Redis. Prints each
role's peak resident memory and the machine's least available memory: the figures behind
``fleetflow.testbed.memory.Footprint`` and the README's test-bed section.

Run by hand, around what to measure:

    .venv/bin/python bench/bench_memory.py -- make test
    .venv/bin/python bench/bench_memory.py -- .venv/bin/fleetflow up
    .venv/bin/python bench/bench_memory.py --seconds 600      # whatever runs now, for 10 min
"""

from __future__ import annotations

import argparse
import subprocess
import time
from collections import defaultdict
from pathlib import Path

from fleetflow.testbed import memory

INTERVAL = 1.0
CLUSTER_PROGRAMS = {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"}


def role(args: list[str]) -> str | None:
    """The role of a process from its command line, or None for what is not ours to count."""
    program = Path(args[0]).name if args else ""
    line = " ".join(args)
    directory = memory.bed_directory(args)
    if directory is not None:
        if "/kwok/clusters/" in line and program in CLUSTER_PROGRAMS:
            cluster = line.split("/kwok/clusters/", 1)[1].split("/", 1)[0]
            return f"bed {directory.parent.name} cluster {cluster}"
        return f"bed {directory.parent.name} DNS chain"
    if "chromium" in program or "chrome" in program:
        return "chromium"
    if program in {"postgres", "postmaster"}:
        return "postgresql"
    if program == "redis-server":
        return "redis"
    if "python" in program or program in {"prefect", "pytest", "fleetflow"}:
        if "prefect.engine" in line or "flow_run" in line:
            return "prefect flow runs"
        if "worker" in line and "start" in line:
            return "prefect worker"
        if "uvicorn" in line or ("server" in line and "start" in line) or "services" in line:
            return "prefect server"
        if "pytest" in line:
            return "pytest"
    return None


def sample() -> dict[str, int]:
    """Resident KiB by role, now."""
    found: dict[str, int] = defaultdict(int)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = [
                a.decode(errors="replace") for a in (entry / "cmdline").read_bytes().split(b"\0")
            ]
        except OSError:
            continue
        name = role([a for a in args if a])
        if name is not None:
            found[name] += memory.rss_kib(entry.name)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, help="sample this long (without a command)")
    parser.add_argument("command", nargs="*", help="the command to run and measure")
    args = parser.parse_args()
    proc = subprocess.Popen(args.command) if args.command else None
    started = time.monotonic()
    peaks: dict[str, int] = defaultdict(int)
    least_available = memory.available_mib()
    peak_total = 0
    try:
        while True:
            now = sample()
            for name, kib in now.items():
                peaks[name] = max(peaks[name], kib)
            peak_total = max(peak_total, sum(now.values()))
            least_available = min(least_available, memory.available_mib())
            if proc is not None and proc.poll() is not None:
                break
            if proc is None and time.monotonic() - started > (args.seconds or 60):
                break
            time.sleep(INTERVAL)
    except KeyboardInterrupt:
        pass
    elapsed = time.monotonic() - started
    print(f"sampled {elapsed:.0f} s every {INTERVAL:.0f} s")
    for name, kib in sorted(peaks.items()):
        print(f"peak {name:<48} {kib / 1024:7.0f} MiB")
    print(f"peak of all the above at once {'':<24} {peak_total / 1024:7.0f} MiB")
    print(f"least memory available        {'':<24} {least_available:7.0f} MiB")
    if proc is not None:
        raise SystemExit(proc.returncode)


if __name__ == "__main__":
    main()
