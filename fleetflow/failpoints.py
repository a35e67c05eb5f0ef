"""Named crash points in every procedure, for proving that a run killed anywhere converges.

Each procedure declares its steps once, in order (a recorded phase is a step). Every step has
three points: ``<procedure>/<step>:before`` (nothing of the step written yet), ``:write`` (just
after one of the step's writes to a cluster or to Prefect was acknowledged, the others not yet
made: the first one, or the ``N``-th with ``:write@N``) and ``:after`` (every write of the step
made; for a recorded phase, its record not yet written). A point does nothing unless
``FLEETFLOW_FAILPOINTS`` arms it, as etcd's gofail does::

    FLEETFLOW_FAILPOINTS='failover/scaled-up:write@2=kill;join/registered:before=sleep=5'

``kill`` sends SIGKILL to the process running the flow (a crashed worker, a closed terminal),
``raise`` makes the step fail with :class:`~fleetflow.errors.FailpointHit`, ``sleep=N`` holds the
run N seconds there (to restart a server under it). Unset, a point costs under a microsecond.

A step is entered with :func:`enter`, which refuses a name its procedure never declared: a new
step cannot be added without its points, and ``fleetflow failpoints`` lists them all.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field

from fleetflow.errors import FailpointHit, InvalidRequest
from fleetflow.settings import settings

ENV = "FLEETFLOW_FAILPOINTS"
WHEN = ("before", "write", "after")
"""Where in a step a point is, in the order a run passes them."""
ACTIONS = ("kill", "raise", "sleep")

_DECLARED: dict[str, tuple[str, ...]] = {}


def declare(procedure: str, steps: Sequence[str]) -> tuple[str, ...]:
    """Declare ``procedure``'s steps in the order it runs them; returns them. Declaring again
    adds the steps not yet declared (a procedure whose steps depend on its request declares
    them all)."""
    known = _DECLARED.get(procedure, ())
    _DECLARED[procedure] = known + tuple(s for s in steps if s not in known)
    return tuple(steps)


def declared() -> dict[str, tuple[str, ...]]:
    """Every procedure declared so far, with its steps."""
    return dict(_DECLARED)


def names(procedure: str) -> list[str]:
    """Every point of ``procedure``, in the order a run passes them."""
    return [f"{procedure}/{s}:{w}" for s in _DECLARED.get(procedure, ()) for w in WHEN]


@dataclass(frozen=True)
class Armed:
    """One armed point: ``name`` (``proc/step:when``), the hit that fires it, and its action."""

    name: str
    action: str
    seconds: float = 0.0
    hit: int = 1

    @property
    def procedure(self) -> str:
        return self.name.split("/", 1)[0]

    def text(self) -> str:
        at = f"@{self.hit}" if self.hit != 1 else ""
        does = f"sleep={self.seconds:g}" if self.action == "sleep" else self.action
        return f"{self.name}{at}={does}"


def parse(spec: str) -> dict[str, Armed]:
    """``FLEETFLOW_FAILPOINTS``'s value, by point and hit (``proc/step:when@N``); raises
    InvalidRequest naming the first entry that is not ``proc/step:when[@N]=kill|raise|sleep=S``.
    The names are checked against the declarations by :func:`check`."""
    armed: dict[str, Armed] = {}
    for entry in (e.strip() for e in spec.split(";")):
        if not entry:
            continue
        point, _, action = entry.partition("=")
        action, _, arg = action.partition("=")
        name, _, hit = point.partition("@")
        procedure, _, rest = name.partition("/")
        step, _, when = rest.partition(":")
        problem = _problem(procedure, step, when, hit, action, arg)
        if problem:
            raise InvalidRequest(
                f"{ENV} entry {entry!r}: {problem}; `fleetflow failpoints` lists the points"
            )
        seconds = float(arg) if action == "sleep" else 0.0
        armed[f"{name}@{int(hit or 1)}"] = Armed(
            name=name, action=action, seconds=seconds, hit=int(hit or 1)
        )
    return armed


def _problem(procedure: str, step: str, when: str, hit: str, action: str, arg: str) -> str | None:
    """What is wrong with one entry's parts, or None."""
    if not (procedure and step and when):
        return "it names no point (procedure/step:when)"
    if when not in WHEN:
        return f"{when!r} is none of {', '.join(WHEN)}"
    if hit and when != "write":
        return "@N is only for :write"
    if hit and not (hit.isdigit() and int(hit) >= 1):
        return f"@{hit} is no count from 1"
    if action not in ACTIONS or (action == "sleep") != bool(arg):
        return f"its action {action!r} is none of kill, raise, sleep=SECONDS"
    if action == "sleep" and not _seconds(arg):
        return f"sleep={arg} is no number of seconds"
    return None


def _seconds(text: str) -> bool:
    try:
        return float(text) >= 0
    except ValueError:
        return False


def check(armed: dict[str, Armed], procedures: dict[str, tuple[str, ...]]) -> None:
    """Refuse an armed point that no declared step has: a typo would never fire, and a crash
    test would pass without crashing anything. Points of procedures this process has not
    declared are another process's, and left alone."""
    for point in armed.values():
        steps = procedures.get(point.procedure)
        if steps is not None and point.name not in names(point.procedure):
            raise InvalidRequest(
                f"{ENV} arms {point.name}, which {point.procedure} does not have; its steps: "
                f"{', '.join(s for s in steps)} (each :before, :write, :after)"
            )


@dataclass
class _Scope:
    """The step a run is in: its writes are counted, across the step's task threads."""

    procedure: str
    step: str
    writes: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


_STEP: ContextVar[_Scope | None] = ContextVar("fleetflow_failpoint_step", default=None)
_TRACE: ContextVar[list[str] | None] = ContextVar("fleetflow_failpoint_trace", default=None)
_PARSED: dict[str, dict[str, Armed]] = {}


def _armed() -> dict[str, Armed]:
    # The variable itself first: unset (always, outside crash tests), a point costs a look-up,
    # not a settings object read from the environment.
    raw = os.environ.get(ENV)
    if not raw:
        return {}
    if raw not in _PARSED:
        armed = parse(settings().failpoints)
        check(armed, _DECLARED)
        _PARSED[raw] = armed
    return _PARSED[raw]


def enter(procedure: str, step: str) -> None:
    """A run begins ``step`` of ``procedure``: its ``:before`` point, and its writes counted
    from here until the next step begins (in this thread and the tasks it starts)."""
    if step not in _DECLARED.get(procedure, ()):
        raise RuntimeError(f"step {step!r} of {procedure} was never declared (failpoints.declare)")
    _STEP.set(_Scope(procedure, step))
    _reach(f"{procedure}/{step}:before")


def leave(procedure: str, step: str) -> None:
    """Every write of ``step`` is made (its record is not yet): its ``:after`` point."""
    _reach(f"{procedure}/{step}:after")
    _STEP.set(None)


def wrote() -> None:
    """One write of the current step was acknowledged: its ``:write`` point (counted)."""
    scope = _STEP.get()
    if scope is None or (_TRACE.get() is None and ENV not in os.environ):
        return  # nothing armed, nothing traced: nobody needs the count
    with scope.lock:
        scope.writes += 1
        count = scope.writes
    _reach(f"{scope.procedure}/{scope.step}:write", count)


@contextmanager
def traced() -> Iterator[list[str]]:
    """Every point this run reaches, in order (``:write@N`` with its count): what a crash
    matrix takes its cases from."""
    seen: list[str] = []
    token = _TRACE.set(seen)
    try:
        yield seen
    finally:
        _TRACE.reset(token)


def _reach(name: str, count: int = 1) -> None:
    trace = _TRACE.get()
    if trace is not None:
        trace.append(f"{name}@{count}" if name.endswith(":write") else name)
    point = _armed().get(f"{name}@{count}")
    if point is None:
        return
    print(f"failpoint {point.text()}", file=sys.stderr, flush=True)
    if point.action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    elif point.action == "raise":
        raise FailpointHit(f"failpoint {point.text()} ({ENV}): the step stopped here on purpose")
    else:
        time.sleep(point.seconds)


class Runbook:
    """The steps of a procedure that records no phases (join, rebalance...), declared once: a
    flow calls :meth:`step` as it begins each one, and :meth:`end` once through. A step's
    ``:after`` is where the next one begins."""

    def __init__(self, procedure: str, steps: Sequence[str]) -> None:
        self.procedure, self.steps = procedure, declare(procedure, steps)
        self._at: ContextVar[str | None] = ContextVar(
            f"fleetflow_runbook_{procedure}", default=None
        )

    def step(self, name: str) -> None:
        if name not in self.steps:
            raise RuntimeError(f"step {name!r} of {self.procedure} was never declared")
        at = self._at.get()
        # Steps only go forward in a run: one that goes back is a new run (in this thread,
        # after one that failed), not the end of the step the failed one was in.
        if at is not None and self.steps.index(at) < self.steps.index(name):
            self.end()
        enter(self.procedure, name)
        self._at.set(name)

    def end(self) -> None:
        if (at := self._at.get()) is not None:
            self._at.set(None)
            leave(self.procedure, at)
