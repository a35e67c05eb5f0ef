"""Whether this machine has the memory for a test bed and what runs beside it.

A machine without swap that runs out of memory stops answering, so a test bed refuses to start
what the machine cannot hold, before it starts a process, and says what to stop or what smaller
size to ask for. The figures are measured peaks (resident memory, the README's test-bed section
says how), rounded up; the decision is pure. Reading the machine (``/proc``, the cgroup) is kept
to :func:`available_mib` and :func:`beds_running`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from fleetflow.testbed.spec import TestbedSpec

MIB = 1024 * 1024


@dataclass(frozen=True)
class Footprint:
    """Peak resident memory, in MiB, of what a test bed and the processes beside it hold."""

    # Peaks measured with bench/bench_memory.py over a whole `make test` run beside a `make up`
    # stack (2 cores, Kubernetes 1.36), rounded up.
    host: int = 560  # etcd, kube-apiserver, kube-controller-manager: 512 at peak
    # ... + kube-scheduler and a kwok controller, three nodes: 580 at peak; + metrics-server: 72
    member: int = 680
    node: float = 2.0  # each kwok node beyond three: 50 more nodes added 45 MiB, pods extra
    dns: int = 120  # the records' etcd, CoreDNS, ExternalDNS: 94 at peak
    stack: int = 900  # `fleetflow up`'s Prefect server, worker and a flow run: 660 idle
    api_process: int = 400  # each API process beyond the first, and the services process
    # pytest, its Prefect server, workers, flow runs, Chromium, PostgreSQL and Redis: about 2.1
    # GiB at once beside the session's own bed
    suite: int = 2400


FOOTPRINT = Footprint()


@dataclass(frozen=True)
class Part:
    what: str
    mib: int


def _gib(mib: float) -> str:
    return f"{mib / 1024:.1f} GiB"


def describe(parts: Sequence[Part]) -> str:
    """``about 3.3 GiB: host host 0.5 GiB, 3 members 1.8 GiB, ...``"""
    listed = ", ".join(f"{p.what} {_gib(p.mib)}" for p in parts if p.mib)
    return f"about {_gib(sum(p.mib for p in parts))}: {listed}"


def cluster_parts(
    spec: TestbedSpec, clusters: Iterable[str], footprint: Footprint = FOOTPRINT
) -> list[Part]:
    """What starting ``clusters`` of ``spec`` adds."""
    wanted = set(clusters)
    parts = [Part(f"host {spec.host}", footprint.host)] if spec.host in wanted else []
    members = [m for m in spec.members if m.name in wanted]
    if members:
        extra_nodes = sum(max(0, m.nodes - 3) for m in members)
        mib = len(members) * footprint.member + round(extra_nodes * footprint.node)
        parts.append(Part(f"{len(members)} member{'s' * (len(members) != 1)}", mib))
    return parts


def bed_parts(
    spec: TestbedSpec,
    clusters: Iterable[str] | None = None,
    *,
    dns: bool = True,
    footprint: Footprint = FOOTPRINT,
) -> list[Part]:
    """What starting the test bed (or only ``clusters`` of it, and the DNS chain if ``dns``)
    adds."""
    names = spec.cluster_names() if clusters is None else clusters
    parts = cluster_parts(spec, names, footprint)
    return parts + ([Part("DNS chain", footprint.dns)] if dns else [])


def stack_parts(api_workers: int = 1, footprint: Footprint = FOOTPRINT) -> list[Part]:
    """What ``fleetflow up``'s Prefect server, services and worker add."""
    extra = 0 if api_workers == 1 else api_workers  # beyond the first, plus the services process
    return [Part("Prefect server and worker", footprint.stack + extra * footprint.api_process)]


def suite_parts(footprint: Footprint = FOOTPRINT) -> list[Part]:
    return [Part("the test session", footprint.suite)]


@dataclass(frozen=True)
class RunningBed:
    """Another test bed on this machine: its directory and the memory its processes hold."""

    directory: Path
    mib: int
    stack: bool = False  # a `fleetflow up` stack's: its home has the Prefect processes' pid files

    def stop_command(self) -> str:
        down = "fleetflow down" if self.stack else "fleetflow testbed down"
        return f"FLEETFLOW_HOME={self.directory.parent} {down}"


def members_that_fit(
    spec: TestbedSpec,
    room_mib: int,
    beside: Sequence[Part],
    footprint: Footprint = FOOTPRINT,
) -> int:
    """The most members (the first ones of ``spec``) whose bed, with ``beside``, fits in
    ``room_mib``: 0 when not even one does."""
    fixed = sum(p.mib for p in beside)
    fits = 0
    for count in range(1, len(spec.members) + 1):
        names = [spec.host] + [m.name for m in spec.members[:count]]
        if fixed + sum(p.mib for p in bed_parts(spec, names, footprint=footprint)) > room_mib:
            break
        fits = count
    return fits


def refusal(
    need: Sequence[Part],
    available_mib: int,
    reserve_mib: int,
    *,
    others: Sequence[RunningBed] = (),
    fitting_members: int | None = None,
) -> str | None:
    """None when ``need`` fits in what is available while keeping ``reserve_mib`` free; else the
    one line that says so and what to do: stop another bed, or ask for fewer members."""
    total = sum(p.mib for p in need)
    if total + reserve_mib <= available_mib:
        return None
    line = (
        f"not enough memory: this needs {describe(need)}; the machine has "
        f"{_gib(available_mib)} available and keeps {_gib(reserve_mib)} free "
        "(FLEETFLOW_MEMORY_RESERVE)"
    )
    fixes = [
        f"stop the test bed in {bed.directory} ({_gib(bed.mib)}): `{bed.stop_command()}`"
        for bed in sorted(others, key=lambda b: -b.mib)
    ]
    if fitting_members:
        fixes.append(
            f"ask for at most {fitting_members} member{'s' * (fitting_members != 1)} (--member)"
        )
    if not fixes:
        fixes.append("stop what else holds memory, or use a machine with more")
    return f"{line}; {', or '.join(fixes)}"


def available_mib(meminfo: Path = Path("/proc/meminfo")) -> int:
    """What the kernel says can be used without swapping, capped by this process's cgroup."""
    available = None
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemAvailable:"):
            available = int(line.split()[1]) // 1024
    if available is None:
        raise OSError(f"no MemAvailable in {meminfo}")
    return min(available, cgroup_room_mib() or available)


def cgroup_room_mib(
    root: Path = Path("/sys/fs/cgroup"), membership: Path = Path("/proc/self/cgroup")
) -> int | None:
    """The room left under this process's cgroup memory limit (v2 or v1), if it has one."""
    with contextlib.suppress(OSError):
        for line in membership.read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if controllers == "":
                files = root / path.lstrip("/"), "memory.max", "memory.current"
            elif "memory" in controllers.split(","):
                files = (
                    root / "memory" / path.lstrip("/"),
                    "memory.limit_in_bytes",
                    "memory.usage_in_bytes",
                )
            else:
                continue
            with contextlib.suppress(OSError, ValueError):
                limit = (files[0] / files[1]).read_text().strip()
                if limit != "max" and int(limit) < 1 << 60:  # v1 writes "no limit" as ~2**63
                    used = int((files[0] / files[2]).read_text())
                    return max(0, (int(limit) - used) // MIB)
    return None


def rss_kib(pid: str) -> int:
    """A process's resident memory, 0 once it is gone."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


_PROGRAMS = frozenset(
    {
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kwok",
        "coredns",
        "external-dns",
    }
)
# kwokctl passes each process paths under <testbed>/kwok/clusters/<name>/; the DNS chain runs
# from <testbed>/dns/.
_MARKERS = ("/kwok/clusters/", "/dns/")


def beds_running(proc: Path = Path("/proc")) -> list[RunningBed]:
    """Every test bed whose processes run on this machine, by directory, with their memory."""
    found: dict[Path, int] = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        directory = bed_directory([a.decode(errors="replace") for a in args])
        if directory is not None:
            found[directory] = found.get(directory, 0) + rss_kib(entry.name)
    return [
        RunningBed(d, kib // 1024, stack=(d.parent / "run" / "server.pid").exists())
        for d, kib in sorted(found.items())
    ]


def bed_directory(args: Sequence[str]) -> Path | None:
    """The test-bed directory a test-bed process's command line points into, if it is one."""
    if not args or Path(args[0]).name not in _PROGRAMS:
        return None
    for arg in args[1:]:
        value = arg.partition("=")[2] or arg
        for marker in _MARKERS:
            head, sep, _ = value.partition(marker)
            if sep and head.endswith("/testbed") and os.path.isabs(head):
                return Path(head)
    return None
