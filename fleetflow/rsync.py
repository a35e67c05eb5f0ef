"""The rsync mover: copy one volume's directory onto another with the real ``rsync``.

Volumes are reached by their directories on this machine (hostPath or local
PersistentVolumes, as the test bed's storage class makes them, or any single-machine setup).
Each pass is ``rsync -a --delete --inplace --no-whole-file``: files whose size or time differ
are sent as a delta against what the target already holds, and what the source no longer has is
removed, so that the two trees end up equal. ``--partial`` keeps a partly sent file only when
rsync is stopped by a signal it can handle; a worker killed outright (SIGKILL, out of memory)
leaves its temporary file unused. Writing in place survives that: a rerun finds the half-sent
file and sends only the rest (the target serves nothing while it is copied to, and verification
reads every byte anyway). ``--no-whole-file`` keeps the delta transfer that rsync turns off
between local directories. The figures come from rsync's own ``--stats``: the bytes it actually
sent (literal data) and the files it updated; its progress (``--info=progress2``) goes to a
callback while it copies. Each rsync dies with the run that started it, and a pass waits
until no rsync of an earlier run still writes into its target.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel

from fleetflow.errors import TransferFailed

Progress = Callable[[str], None]

_PROGRESS = re.compile(r"^\s*([\d,]+)\s+(\d+)%\s+(\S+)\s+(\S+)")
_FILES = re.compile(r"Number of regular files transferred:\s*([\d,]+)")
_SENT = re.compile(r"Literal data:\s*([\d,]+)")
_SIZE = re.compile(r"Total transferred file size:\s*([\d,]+)")


class Pass(BaseModel):
    """What one rsync pass moved: the bytes it sent, the files it updated and their size, and
    how long it took. A dry run sends nothing: its ``size`` is what a pass would update."""

    bytes: int = 0
    files: int = 0
    size: int = 0
    seconds: float = 0.0

    def __add__(self, other: Pass) -> Pass:
        """Two passes as one (the volumes of a round, one after the other)."""
        return Pass(
            bytes=self.bytes + other.bytes,
            files=self.files + other.files,
            size=self.size + other.size,
            seconds=self.seconds + other.seconds,
        )


def resolved(directory: str) -> tuple[str, bool]:
    """Where ``directory`` really is on this machine (symbolic links followed, ``..`` folded),
    and whether it is itself a symbolic link: what ``fleetflow.volume_paths`` decides on."""
    return os.path.realpath(directory), os.path.islink(directory)


def rsync_binary() -> str:
    found = shutil.which("rsync")
    if found is None:
        raise TransferFailed(
            "rsync is not installed on this worker: install it (Debian: apt-get install rsync; "
            "`make up` and `make test` do) and rerun; the source still serves"
        )
    return found


def _dies_with_parent(args: list[str]) -> list[str]:
    """``args`` run so that the process dies with the thread that started it
    (``PR_SET_PDEATHSIG`` through util-linux's ``setpriv``, on every Debian): a run killed
    outright (SIGKILL, out of memory) leaves no rsync copying behind it, onto a target that a
    rerun may already be copying to or verifying."""
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", *args] if setpriv else args


def movers_into(target: Path) -> list[int]:
    """The live rsync processes on this machine writing into ``target`` (zombies, already
    dead, left out): any, and a run about to copy there waits, for they belong to an earlier
    run."""
    wanted = f"{target}/".encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            state = (proc / "stat").read_text().rpartition(")")[2].split()[0]
        except OSError:  # gone meanwhile, or not ours to read
            continue
        rsync = bool(argv) and Path(argv[0].decode(errors="replace")).name == "rsync"
        if rsync and wanted in argv and state != "Z":
            found.append(int(proc.name))
    return sorted(found)


def _no_earlier_mover(target: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while found := movers_into(target):
        if time.monotonic() >= deadline:
            raise TransferFailed(
                f"rsync (pid {', '.join(map(str, found))}) of an earlier run still writes into "
                f"{target}: wait for it to end, or stop it, then rerun; the source is untouched"
            )
        time.sleep(0.2)


def _args(source: Path, target: Path, *, dry_run: bool, bwlimit_mbps: float | None) -> list[str]:
    args = [rsync_binary(), "-a", "--delete", "--inplace", "--no-whole-file", "--stats"]
    args.append("--numeric-ids")
    if dry_run:
        args.append("--dry-run")
    else:
        args.append("--info=progress2")
    if bwlimit_mbps:
        args.append(f"--bwlimit={max(1, round(bwlimit_mbps * 1000))}kb")
    # The trailing slash copies the directory's contents, not the directory into itself; ``--``
    # ends the options, so that no directory is ever read as one.
    return [*args, "--", f"{source}/", f"{target}/"]


def _number(pattern: re.Pattern[str], text: str) -> int:
    found = pattern.search(text)
    return int(found.group(1).replace(",", "")) if found else 0


def sync(
    source: Path,
    target: Path,
    *,
    dry_run: bool = False,
    bwlimit_mbps: float | None = None,
    progress: Progress | None = None,
    every: float = 2.0,
    keep_going: Callable[[], None] | None = None,
) -> Pass:
    """One pass from ``source`` to ``target`` (with ``dry_run``: what a pass would send, and
    how long finding it takes). ``progress`` gets a line at most every ``every`` seconds.
    ``keep_going`` is called at each line rsync prints: what it raises stops the pass (rsync
    killed first), as a run that lost its lease must stop writing at once."""
    for path, side in ((source, "source"), (target, "target")):
        if not path.is_dir():
            raise TransferFailed(f"the {side} volume's directory {path} is not on this machine")
    if not dry_run:
        _no_earlier_mover(target, timeout=10.0)
    start = time.monotonic()
    proc = subprocess.Popen(
        _dies_with_parent(_args(source, target, dry_run=dry_run, bwlimit_mbps=bwlimit_mbps)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,  # universal newlines: progress2's \r-rewritten line reads as lines
    )
    assert proc.stdout is not None and proc.stderr is not None
    tail: list[str] = []
    shown = start  # the first line after ``every`` seconds: a quick pass says nothing
    try:
        for raw in proc.stdout:
            if keep_going is not None:
                keep_going()
            line = raw.rstrip("\n")
            match = _PROGRESS.match(line)
            if match is None:
                tail.append(line)
                continue
            now = time.monotonic()
            if progress is not None and now - shown >= every:
                shown = now
                sent, percent, rate, eta = match.groups()
                progress(f"{sent} bytes sent ({percent}%) at {rate}, ~{eta} left")
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    errors = proc.stderr.read()
    code = proc.wait()
    if code != 0:
        last = (errors.strip().splitlines() or ["no message"])[-1]
        raise TransferFailed(
            f"rsync {source} -> {target} exited {code}: {last}; the source is untouched: rerun "
            "to resume the copy"
        )
    stats = "\n".join(tail)
    return Pass(
        bytes=_number(_SENT, stats),
        files=_number(_FILES, stats),
        size=_number(_SIZE, stats),
        seconds=time.monotonic() - start,
    )
