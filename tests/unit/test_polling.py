"""poll_until: the one wait."""

from __future__ import annotations

import itertools

import pytest

from fleetflow.errors import ClusterUnreachable, WaitTimeout
from fleetflow.polling import poll_until


def test_returns_the_first_value_that_is_done() -> None:
    counter = itertools.count()
    assert (
        poll_until(
            lambda: next(counter), lambda n: n >= 3, timeout=5, interval=0.001, waiting_for="3"
        )
        == 3
    )


def test_past_the_deadline_says_what_was_awaited_and_seen_last() -> None:
    with pytest.raises(WaitTimeout) as info:
        poll_until(
            lambda: ["a", "b"],
            lambda left: not left,
            timeout=0.05,
            interval=0.01,
            waiting_for="CRDs Established",
            describe=lambda left: f"not yet: {', '.join(left)}",
            hint="check the apiserver",
        )
    assert str(info.value) == (
        "CRDs Established: not done after 0.05s (last seen: not yet: a, b); check the apiserver"
    )
    assert info.value.last == ["a", "b"]
    assert not info.value.retryable


def test_errors_of_the_look_are_not_swallowed() -> None:
    def look() -> bool:
        raise ClusterUnreachable("m1", "refused")

    with pytest.raises(ClusterUnreachable):
        poll_until(look, bool, timeout=5, waiting_for="never")
