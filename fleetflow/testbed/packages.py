"""The system packages that ``make test`` and ``make up`` need, and their installation.

Each package is declared once, with what proves it is installed and what needs it; the Makefile
installs the missing ones (``apt-get`` as root, through ``sudo`` otherwise) before anything is
built, and a test that needs one fails with the same line when it is still missing. Standard
library only: the Makefile runs this with the system's ``python3`` before the virtualenv exists::

    python3 -m fleetflow.testbed.packages test
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fleetflow.errors import TestbedError

TARGETS = ("test", "up")


@dataclass(frozen=True)
class Package:
    """A Debian package, what proves it is installed, and what needs it."""

    name: str
    proof: str  # a command on PATH, or an absolute path (a glob) that exists once installed
    needed_by: str
    targets: tuple[str, ...]


PACKAGES = (
    Package("chromium", "/usr/bin/chromium", "the browser test of the Prefect UI", ("test",)),
    Package(
        "postgresql",
        "/usr/lib/postgresql/*/bin/initdb",
        "the tests of a Prefect server on PostgreSQL",
        ("test",),
    ),
    Package(
        "redis-server",
        "redis-server",
        "the tests of a Prefect server of several API processes",
        ("test",),
    ),
    Package(
        "rsync",
        "rsync",
        "data-aware migration's mover between the test bed's volumes",
        ("up", "test"),
    ),
    Package(
        "bind9-dnsutils",
        "dig",
        "`dig`, which `make up` suggests for asking the test bed's DNS",
        ("up",),
    ),
)


def package(name: str) -> Package:
    for pkg in PACKAGES:
        if pkg.name == name:
            return pkg
    raise KeyError(name)


def missing_line(pkg: Package) -> str:
    """The one line that says a package is missing, what needs it and how to get it."""
    how = " or ".join(f"`make {t}`" for t in pkg.targets)
    return (
        f"{pkg.name} is not installed: {pkg.needed_by} needs it; {how} installs it with apt-get, "
        f"or install the package {pkg.name!r} with your system's package manager"
    )


@dataclass(frozen=True)
class Decision:
    """What to do about the missing packages: run ``commands`` (after printing ``lines``), or only
    print ``lines``."""

    lines: tuple[str, ...]
    commands: tuple[tuple[str, ...], ...] = ()


def decide(missing: Sequence[Package], *, root: bool, has_apt: bool, has_sudo: bool) -> Decision:
    """Install with apt-get when it can run (as root, or through sudo), else name each package."""
    if not missing:
        return Decision(lines=())
    if not has_apt or not (root or has_sudo):
        why = "no apt-get here" if not has_apt else "not root and no sudo"
        return Decision(lines=tuple(f"{missing_line(p)} ({why})" for p in missing))
    names = tuple(p.name for p in missing)
    what = "; ".join(f"{p.name} for {p.needed_by}" for p in missing)
    prefix: tuple[str, ...] = () if root else ("sudo",)
    env = ("env", "DEBIAN_FRONTEND=noninteractive")
    return Decision(
        lines=(f"installing Debian packages with apt-get: {what}",),
        commands=(
            (*prefix, *env, "apt-get", "update", "-qq"),
            (*prefix, *env, "apt-get", "install", "-y", "-qq", *names),
        ),
    )


def installed(pkg: Package) -> bool:
    if pkg.proof.startswith("/"):
        return bool(glob.glob(pkg.proof))
    return shutil.which(pkg.proof) is not None


def missing(target: str, present: Callable[[Package], bool] = installed) -> list[Package]:
    return [p for p in PACKAGES if target in p.targets and not present(p)]


def require(name: str) -> None:
    """Raise the package's missing line unless it is installed."""
    pkg = package(name)
    if not installed(pkg):
        raise TestbedError(missing_line(pkg))


def ensure(target: str, say: Callable[[str], None] = print) -> int:
    """Install what ``target`` needs and is missing; 0 when nothing is missing any more."""
    decision = decide(
        missing(target),
        root=os.geteuid() == 0,
        has_apt=shutil.which("apt-get") is not None,
        has_sudo=shutil.which("sudo") is not None,
    )
    for line in decision.lines:
        say(line)
    for command in decision.commands:
        done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            say(f"{' '.join(command)} failed ({done.returncode}): {last}")
            return 1
    still = missing(target)
    if decision.commands and still:
        say(f"still missing after apt-get: {', '.join(p.name for p in still)}")
        return 1
    # Without apt-get the tests that need a package fail with its line; the rest still run.
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1 or args[0] not in TARGETS:
        print(f"usage: python3 -m fleetflow.testbed.packages {{{','.join(TARGETS)}}}")
        return 2
    return ensure(args[0])


if __name__ == "__main__":
    sys.exit(main())
