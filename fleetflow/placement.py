"""Replica placement: how many replicas of one federated workload each member cluster runs.

Pure: no Prefect, no I/O. Pydantic models at the edges (``PlacementRequest`` -> ``plan`` ->
``Plan``); underneath, ``plan_replicas`` works on any objects with the candidate's attributes
(``Candidate`` tuples, or the models themselves), so a controller planning thousands of
workloads does not pay for validation it has already done.

How a plan is made, in order:

1. **Eligibility.** Unhealthy or fenced clusters get 0, whatever their min: their replicas must
   move. A cluster with weight 0 gets its min and nothing more (a standby), so if every weighted
   cluster is down the rest is reported ``unplaced`` rather than piled onto the standbys.
2. **Bounds.** Each eligible cluster holds between its min and its cap, the smaller of ``max`` and
   ``capacity``. ``capacity`` is always a hard cap, in either mode: it is the number of replicas of
   this workload the cluster can run *in total* (free room plus the replicas it already runs, as
   KubeFed's estimated capacity). A min above the capacity is cut to the capacity.
3. **Rounding: bounded Sainte-Laguë (Webster).** Mins are the starting seats; each further replica
   goes to the open cluster with the highest quotient ``w / (2s + 1)`` (s = seats held); a
   cluster at its cap leaves the queue. Ties go by a stable hash of (workload, cluster), as
   KubeFed's planner does, so a thousand 1-replica workloads at equal weights spread over the
   members instead of all landing on the alphabetically first; without a workload, by name.
   If every cluster is at its cap before the total is reached, the rest is ``unplaced``, never
   dropped.
4. **Stability.** Given the current distribution, the planner keeps it if it is *fair* and moves
   as few replicas as it can otherwise (see ``plan_replicas``).

Why a divisor method and not largest remainder: the seats are handed out in one fixed order of
quotients that does not depend on the total or on which other clusters exist, so raising the total
never lowers a cluster (no Alabama paradox) and removing a cluster never lowers another. Largest
remainder keeps every cluster within one replica of its exact share but can take a replica away
when the total grows, which is needless pod churn. Balinski and Young proved that no method can
always do both (stay within quota and be population monotone); Sainte-Laguë is the divisor method
that stays within quota most often. With up to three clusters sharing the total it stayed within
quota in every case we checked (exhaustively for weights up to 30, and the property tests); with
four or more, a rare case -- one heavy cluster beside several light ones -- can put a cluster one
past its quota (``tests/unit/test_placement.py`` shows one). We pick monotone; the stability step
then keeps any current distribution that is within quota.

Capacity-aware spreading (``capacity_aware=True``) spreads in proportion to ``weight * capacity``
rather than to weight alone, so equal weights share out the total in proportion to each cluster's
room instead of filling the preferred one to its cap first.
"""

from __future__ import annotations

import hashlib
import heapq
import math
from collections.abc import Iterable, Sequence
from itertools import pairwise
from operator import attrgetter
from typing import NamedTuple, Protocol

from pydantic import BaseModel, ConfigDict, Field

from fleetflow.errors import PlacementError

__all__ = [
    "Candidate",
    "CandidateLike",
    "ClusterCandidate",
    "PlacementRequest",
    "Plan",
    "bound",
    "plan",
    "plan_replicas",
]


class CandidateLike(Protocol):
    """What the planner reads from a candidate cluster: ``Candidate`` and the model both fit."""

    @property
    def name(self) -> str: ...
    @property
    def weight(self) -> int: ...
    @property
    def min(self) -> int: ...
    @property
    def max(self) -> int | None: ...
    @property
    def capacity(self) -> int | None: ...
    @property
    def healthy(self) -> bool: ...
    @property
    def fenced(self) -> bool: ...
    @property
    def current(self) -> int: ...


class Candidate(NamedTuple):
    """A candidate cluster for the fast path: a plain tuple, checked by ``plan_replicas``."""

    name: str
    weight: int = 1
    min: int = 0
    max: int | None = None
    capacity: int | None = None
    healthy: bool = True
    fenced: bool = False
    current: int = 0


class ClusterCandidate(BaseModel):
    """A candidate cluster, validated field by field; cross-field rules are ``plan``'s job."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    weight: int = Field(default=1, ge=0)
    min: int = Field(default=0, ge=0)
    max: int | None = Field(default=None, ge=0)
    capacity: int | None = Field(default=None, ge=0)
    healthy: bool = True
    fenced: bool = False
    current: int = Field(default=0, ge=0)


class PlacementRequest(BaseModel):
    """Place ``total`` replicas of one workload over ``clusters``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    total: int = Field(ge=0)
    clusters: list[ClusterCandidate]
    capacity_aware: bool = False
    workload: str | None = Field(
        default=None, description="namespace/name: ties are broken per workload, by hash"
    )


class Plan(BaseModel):
    """Desired replicas per cluster (every candidate, by name), the shortfall, and why."""

    replicas: dict[str, int]
    unplaced: int = 0
    reasons: dict[str, str]


def plan(request: PlacementRequest) -> Plan:
    """Plan a validated request (see ``plan_replicas`` for the rules)."""
    return plan_replicas(
        request.total,
        request.clusters,
        capacity_aware=request.capacity_aware,
        workload=request.workload,
    )


def plan_replicas(
    total: int,
    clusters: Iterable[CandidateLike],
    *,
    capacity_aware: bool = False,
    workload: str | None = None,
) -> Plan:
    """Plan ``total`` replicas over ``clusters``; raise ``PlacementError`` for impossible inputs.

    The result depends only on the inputs, not on their order: clusters are ranked by a stable
    hash of (``workload``, name), or by name when no workload is given, and ties go to the
    higher rank.

    Stability rule. A distribution is *fair* when it respects every bound, places as many
    replicas as the caps allow, and keeps each cluster within one replica of its exact share
    (``clamp(λ·w, min, cap)`` with λ chosen so the shares add up to what is placed). The planner
    returns the fair distribution that moves the fewest replicas (starts plus stops) away from
    ``current``, unless the fresh Sainte-Laguë plan moves no more, in which case that is returned.
    So: a fair current distribution is kept as it is; from scratch (all currents 0) every plan
    costs the same and the result is plain Sainte-Laguë; scaling a kept plan up never lowers a
    cluster and moves only the added replicas; a failed cluster's replicas are re-placed without
    reshuffling the rest.
    """
    cs = sorted(clusters, key=_by_name)
    _check(total, cs, capacity_aware)
    if workload is not None:
        cs.sort(key=lambda c: _rank(workload, c.name))
    n = len(cs)
    weights = [0] * n
    lows = [0] * n
    caps: list[int | None] = [0] * n
    for i, c in enumerate(cs):
        if not c.healthy or c.fenced:
            continue
        cap = bound(c)
        lows[i] = c.min if cap is None or c.min <= cap else cap
        weight = c.weight * c.capacity if capacity_aware and c.capacity is not None else c.weight
        weights[i] = weight
        caps[i] = cap if weight else lows[i]  # weight 0: its min and no more
    seats = _sainte_lague(total, weights, lows, caps)
    currents = [c.current for c in cs]
    if any(currents) and seats != currents:
        seats = _stabilise(seats, currents, weights, lows, caps)
    placed = sum(seats)
    share = "capacity share" if capacity_aware else "weight share"
    by_name = sorted(zip(cs, seats, strict=True), key=lambda pair: pair[0].name)
    return Plan.model_construct(
        replicas={c.name: s for c, s in by_name},
        unplaced=total - placed,
        reasons={c.name: _reason(c, s, share) for c, s in by_name},
    )


def bound(c: CandidateLike) -> int | None:
    """The most a cluster may hold: the smaller of its ``max`` and ``capacity``; None when
    neither is set."""
    if c.max is None or c.capacity is None:
        return c.capacity if c.max is None else c.max
    return min(c.max, c.capacity)


_by_name = attrgetter("name")


def _rank(workload: str, cluster: str) -> bytes:
    """A stable per-workload order of clusters (the same on every run and every machine)."""
    return hashlib.blake2b(f"{workload}\x00{cluster}".encode(), digest_size=8).digest()


def _check(total: int, cs: Sequence[CandidateLike], capacity_aware: bool) -> None:
    """Reject what no plan can satisfy; the models check ranges, tuples are checked here too."""
    if total < 0:
        raise PlacementError(f"total must be >= 0, got {total}")
    for c in cs:
        if not c.name:
            raise PlacementError("cluster names must not be empty")
        for field in ("weight", "min", "max", "capacity", "current"):
            value = getattr(c, field)
            if value is not None and value < 0:
                raise PlacementError(f"cluster {c.name!r}: {field} must be >= 0, got {value}")
        if c.max is not None and c.min > c.max:
            raise PlacementError(f"cluster {c.name!r}: min {c.min} is more than max {c.max}")
    names = [c.name for c in cs]
    if len(set(names)) != len(names):
        dupes = sorted({a for a, b in pairwise(names) if a == b})
        raise PlacementError(f"cluster names must be unique; repeated: {', '.join(dupes)}")
    mins = sum(c.min for c in cs)
    if mins > total:
        named = ", ".join(f"{c.name} (min {c.min})" for c in cs if c.min)
        raise PlacementError(f"the mins add up to {mins}, more than the total {total}: {named}")
    if total > mins and not any(c.weight for c in cs):
        where = f"clusters {', '.join(names)}" if names else "no candidate clusters"
        raise PlacementError(
            f"every weight is zero ({where}): nowhere to put the {total - mins} replicas "
            "above the mins; give some cluster a weight"
        )
    if capacity_aware:
        missing = [c.name for c in cs if c.capacity is None and c.healthy and not c.fenced]
        if missing:
            raise PlacementError(
                "capacity-aware spreading needs a capacity for every healthy cluster; "
                f"missing: {', '.join(missing)}"
            )


def _sainte_lague(
    total: int, weights: list[int], lows: list[int], caps: list[int | None]
) -> list[int]:
    """Bounded Sainte-Laguë: mins first, then each replica to the highest ``w / (2s + 1)``.

    Quotients are floats: IEEE division is correctly rounded, so equal fractions give equal
    floats and ties fall to the name (the index); the order is a fixed function of (w, s), which
    is all monotonicity needs. For large totals the seats above a threshold quotient are given at
    once (they are certainly in the plan), so the heap only settles the last few.
    """
    seats = list(lows)
    left = total - sum(seats)
    open_ = [i for i, cap in enumerate(caps) if cap is None or seats[i] < cap]  # all weighted
    inv_t = 0.0  # 1/t: every seat with a quotient above t has been handed out
    while open_ and left > 2 * len(open_):
        inv_t += 2 * (left - len(open_)) / sum(weights[i] for i in open_)
        given = _jump(1 / inv_t, left, weights, seats, caps, open_)
        if not given:
            break
        left -= given
        open_ = [i for i in open_ if (cap := caps[i]) is None or seats[i] < cap]
    heap = [
        (-weights[i] / (2 * seats[i] + 1), i)
        for i in open_
        if (cap := caps[i]) is None or seats[i] < cap
    ]
    heapq.heapify(heap)
    while left and heap:
        i = heap[0][1]
        s = seats[i] = seats[i] + 1
        left -= 1
        cap = caps[i]
        if cap is None or s < cap:
            heapq.heapreplace(heap, (-weights[i] / (2 * s + 1), i))
        else:
            heapq.heappop(heap)
    return seats


def _jump(
    t: float,
    left: int,
    weights: list[int],
    seats: list[int],
    caps: list[int | None],
    open_: list[int],
) -> int:
    """Hand out every seat with a quotient above ``t`` at once; return how many.

    ``t`` is set so that at most ``left`` seats qualify (about ``w / 2t`` per cluster, give or
    take one half): they are in the plan whatever the heap does next. Counts are checked
    against the same float quotients the heap uses, so the result is exactly the heap's."""
    trial = {}
    for i in open_:
        w, low, cap = weights[i], seats[i], caps[i]
        s = max(low, math.ceil((w / t - 1) / 2))
        if cap is not None and s > cap:
            s = cap
        while s > low and not w / (2 * s - 1) > t:
            s -= 1
        while (cap is None or s < cap) and w / (2 * s + 1) > t:
            s += 1
        trial[i] = s
    given = sum(s - seats[i] for i, s in trial.items())
    if given > left:  # float rounding never gets near, but stay exact
        return 0
    for i, s in trial.items():
        seats[i] = s
    return given


def _shares(
    placed: int, weights: list[int], lows: list[int], caps: list[int | None]
) -> tuple[list[int], list[int]]:
    """Floor and ceiling of each cluster's exact share ``clamp(λ·w, low, cap)``, summing to
    ``placed``; λ = r/W in integers, found by fixing the clusters that hit a bound."""
    floors, ceils = list(lows), list(lows)
    free = [i for i, w in enumerate(weights) if w]
    rest = placed - sum(lows[i] for i, w in enumerate(weights) if not w)
    while free:
        big_w = sum(weights[i] for i in free)
        under = {i: lows[i] for i in free if rest * weights[i] < lows[i] * big_w}
        over = {
            i: cap for i in free if (cap := caps[i]) is not None and rest * weights[i] > cap * big_w
        }
        if not under and not over:
            for i in free:
                floors[i], ceils[i] = rest * weights[i] // big_w, -(-rest * weights[i] // big_w)
            break
        # f(λ) - placed = short - excess: its sign says which side is surely at its bound
        short = sum(low * big_w - rest * weights[i] for i, low in under.items())
        excess = sum(rest * weights[i] - cap * big_w for i, cap in over.items())
        fixed = (under if short >= excess else {}) | (over if excess >= short else {})
        for i, bound in fixed.items():
            floors[i] = ceils[i] = bound
            rest -= bound
        free = [i for i in free if i not in fixed]
    return floors, ceils


def _stabilise(
    seats: list[int],
    currents: list[int],
    weights: list[int],
    lows: list[int],
    caps: list[int | None],
) -> list[int]:
    """The fair distribution nearest ``currents``, or the fresh plan if that moves no more.

    Each share range is at most one wide, so clamping every current into its range and then
    stepping the sum to ``placed`` (one replica per cluster, toward the fresh plan first) is
    optimal: every step is a replica that must start or stop anyway.
    """
    placed = sum(seats)
    floors, ceils = _shares(placed, weights, lows, caps)
    near = [min(max(c, lo), hi) for c, lo, hi in zip(currents, floors, ceils, strict=True)]
    diff = placed - sum(near)
    if diff > 0:
        up = [i for i in range(len(near)) if near[i] < ceils[i]]
        up.sort(key=lambda i: (seats[i] <= near[i], -weights[i] / (2 * near[i] + 1), i))
        for i in up[:diff]:
            near[i] += 1
    elif diff < 0:
        down = [i for i in range(len(near)) if near[i] > floors[i]]
        down.sort(key=lambda i: (seats[i] >= near[i], weights[i] / (2 * near[i] - 1), i))
        for i in down[:-diff]:
            near[i] -= 1
    moves = sum(abs(a - c) for a, c in zip(near, currents, strict=True))
    fresh = sum(abs(a - c) for a, c in zip(seats, currents, strict=True))
    return near if moves < fresh else seats


def _reason(c: CandidateLike, s: int, share: str) -> str:
    """The constraint that decided this cluster's count, most specific first."""
    if not c.healthy or c.fenced:
        why = " and ".join(
            w for w, bad in (("unhealthy", not c.healthy), ("fenced", c.fenced)) if bad
        )
        return f"{why}: 0"
    if c.capacity is not None and s == c.capacity and (c.max is None or c.capacity < c.max):
        return f"capacity {s} (below min {c.min})" if c.min > s else f"capacity {s}"
    if c.max is not None and s == c.max:
        return f"at max {s}"
    if c.min and s == c.min:
        return f"min {s}"
    if c.current and s == c.current:
        return "kept current (stable)"
    return share if c.weight else "weight 0"
