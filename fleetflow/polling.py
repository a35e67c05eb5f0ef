"""The one way fleetflow waits for a condition: look, decide, sleep a little, until a deadline.

Waits that the apiserver can push (a Deployment turning Ready) use a watch instead
(:func:`fleetflow.kube.workloads.wait_deployment_ready`); everything else polls through here, so
every timeout says what was awaited, for how long, and what was seen last.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from fleetflow.errors import WaitTimeout

T = TypeVar("T")


def poll_until(
    look: Callable[[], T],
    done: Callable[[T], bool],
    *,
    timeout: float,
    waiting_for: str,
    interval: float = 0.2,
    describe: Callable[[T], str] = repr,
    hint: str = "",
) -> T:
    """Call ``look`` until ``done`` holds for what it returns; return that value.

    Past ``timeout`` seconds raise :class:`WaitTimeout` saying ``waiting_for``, what was seen
    last (through ``describe``) and ``hint``; the last value is on the error as ``last``.
    ``look`` may raise: its errors are not swallowed.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = look()
        if done(value):
            return value
        left = deadline - time.monotonic()
        if left <= 0:
            error = WaitTimeout(
                f"{waiting_for}: not done after {timeout:g}s (last seen: {describe(value)})"
                + (f"; {hint}" if hint else "")
            )
            error.last = value
            raise error
        time.sleep(min(interval, left))
