"""How fast the replica planner is: run by hand, ``.venv/bin/python bench/bench_placement.py``.

Budget: 10,000 workloads over a fleet of 1,000 clusters in under 2 seconds. Two shapes:

* many small plans -- 10,000 workloads, each over 3-10 clusters drawn from the 1,000, timed on
  the fast path (``Candidate`` tuples), through the pydantic models (validation included), and
  re-planned from their current distribution after a change (the stability step);
* a few big plans -- every workload over all 1,000 clusters.

and with custom scheduling (``fleetflow.scheduling``), the same 10,000 workloads again: the
clusters in 10 regions, 1 in 20 tainted (half NoSchedule, half NoExecute), every workload with
two ordered affinity groups by region and a spread of at least 2 regions, a quarter tolerating
the taints, re-planned from their current distribution after the same change.

Each figure is the best of three runs; the fleet and workloads are seeded, so runs compare.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fleetflow.controlplane import REGION_LABEL
from fleetflow.errors import PlacementError
from fleetflow.placement import (
    Candidate,
    ClusterCandidate,
    PlacementRequest,
    Plan,
    plan,
    plan_replicas,
)
from fleetflow.scheduling import (
    AffinityGroup,
    ClusterSelector,
    Facts,
    Requirement,
    Rules,
    SpreadConstraint,
    Taint,
    Toleration,
    schedule,
)

BUDGET = 2.0
Workload = tuple[int, list[Candidate]]


def fleet(rng: random.Random, size: int = 1000) -> list[Candidate]:
    """Clusters with mixed weights; some capped, some short of room, a few down or fenced."""
    return [
        Candidate(
            name=f"cluster-{i:04}",
            weight=rng.randint(1, 10),
            max=rng.choice([None, None, None, rng.randint(5, 50)]),
            capacity=rng.choice([None, None, rng.randint(0, 60)]),
            healthy=rng.random() > 0.02,
            fenced=rng.random() < 0.01,
        )
        for i in range(size)
    ]


def workloads(rng: random.Random, clusters: list[Candidate], count: int) -> list[Workload]:
    out = []
    for _ in range(count):
        picked = rng.sample(clusters, rng.randint(3, 10))
        picked = [c._replace(min=rng.choice([0, 0, 0, 1])) for c in picked]
        out.append((max(rng.randint(4, 120), sum(c.min for c in picked)), picked))
    return out


def changed(rng: random.Random, work: list[Workload], plans: list[Plan]) -> list[Workload]:
    """The same workloads with their plans as current, then a change: a new total for a third,
    a cluster gone unhealthy for a tenth, nothing for the rest."""
    out = []
    for (total, cs), p in zip(work, plans, strict=True):
        cs = [c._replace(current=p.replicas[c.name]) for c in cs]
        roll = rng.random()
        if roll < 0.33:
            total = max(sum(c.min for c in cs), total + rng.randint(-20, 20))
        elif roll < 0.43:
            sick = rng.randrange(len(cs))
            cs = [c._replace(healthy=False) if i == sick else c for i, c in enumerate(cs)]
        out.append((total, cs))
    return out


REGIONS = [f"region-{i}" for i in range(10)]
TAINTS = [Taint.parse("maintenance=true:NoExecute"), Taint.parse("dedicated=batch:NoSchedule")]


def facts(rng: random.Random, clusters: list[Candidate]) -> dict[str, Facts]:
    """Each cluster's region; 1 in 20 tainted."""
    return {
        c.name: Facts(
            {REGION_LABEL: REGIONS[i % len(REGIONS)]},
            [rng.choice(TAINTS)] if rng.random() < 0.05 else [],
        )
        for i, c in enumerate(clusters)
    }


def rules(rng: random.Random, count: int) -> list[Rules]:
    """Per workload: a first group of three regions, then every region; at least 2 regions;
    a quarter tolerate both taints. Drawn from 50 distinct rule sets, as teams share them."""

    def one() -> Rules:
        first = rng.sample(REGIONS, 3)
        term = Requirement(key=REGION_LABEL, operator="In", values=first)
        return Rules(
            groups=[
                AffinityGroup(
                    name="near", clusterSelector=ClusterSelector(matchExpressions=[term])
                ),
                AffinityGroup(name="anywhere"),
            ],
            spread=[SpreadConstraint(spreadBy="region", minGroups=2)],
            tolerations=(
                [
                    Toleration(key="maintenance", operator="Exists"),
                    Toleration(key="dedicated", operator="Exists"),
                ]
                if rng.random() < 0.25
                else []
            ),
        )

    shared = [one() for _ in range(50)]
    return [rng.choice(shared) for _ in range(count)]


def repeat(count: int, fn: Callable[[], object]) -> Callable[[], None]:
    def run() -> None:
        for _ in range(count):
            fn()

    return run


def best_of(runs: int, fn: Callable[[], object]) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def report(label: str, plans: int, seconds: float, budget: float | None = None) -> None:
    verdict = "" if budget is None else ("  ok" if seconds < budget else "  OVER BUDGET")
    print(
        f"{label:<58} {plans:>6} plans {seconds:8.3f} s {plans / seconds:>10,.0f} plans/s{verdict}"
    )


def main() -> int:
    rng = random.Random(20240601)
    clusters = fleet(rng)
    work = workloads(rng, clusters, 10_000)
    fresh = [plan_replicas(total, cs) for total, cs in work]
    again = changed(rng, work, fresh)

    def fast() -> None:
        for total, cs in work:
            plan_replicas(total, cs)

    def models() -> None:
        for total, cs in work:
            raw = {"total": total, "clusters": [c._asdict() for c in cs]}
            plan(PlacementRequest.model_validate(raw))

    requests = [
        PlacementRequest(total=total, clusters=[ClusterCandidate(**c._asdict()) for c in cs])
        for total, cs in again
    ]

    def replan_fast() -> None:
        for total, cs in again:
            plan_replicas(total, cs)

    def replan_models() -> None:
        for request in requests:
            plan(request)

    moved = sum(
        sum(abs(p.replicas[c.name] - c.current) for c in cs)
        for (_, cs), p in zip(again, (plan_replicas(t, cs) for t, cs in again), strict=True)
    )
    changes = sum(
        1
        for (t0, c0), (t1, c1) in zip(work, again, strict=True)
        if t0 != t1 or any(a.healthy != b.healthy for a, b in zip(c0, c1, strict=True))
    )

    print(f"fleet of {len(clusters)} clusters; 10,000 workloads over 3-10 of them, 4-120 replicas")
    report("fast path, fresh (Candidate tuples)", len(work), best_of(3, fast), BUDGET)
    report("pydantic models, fresh (validation included)", len(work), best_of(3, models), BUDGET)
    report(
        "fast path, re-plan after a change (stability step)",
        len(again),
        best_of(3, replan_fast),
        BUDGET,
    )
    report(
        "pydantic models, re-plan (requests pre-validated)",
        len(requests),
        best_of(3, replan_models),
        BUDGET,
    )
    print(f"  re-plan: {changes} workloads changed, {moved} replica starts+stops in all")

    labels = facts(rng, clusters)
    policies = rules(rng, len(again))

    def scheduled() -> tuple[int, int]:
        errors = fallbacks = 0
        for (total, cs), policy in zip(again, policies, strict=True):
            try:
                found = schedule(total, cs, labels, policy, workload="bench/w")
            except PlacementError:
                errors += 1
                continue
            fallbacks += found.group == "anywhere"
        return errors, fallbacks

    report(
        "scheduled: groups, spread, taints, re-plan",
        len(again),
        best_of(3, scheduled),
        BUDGET,
    )
    errors, fallbacks = scheduled()
    print(f"  scheduled: {fallbacks} on their fallback group, {errors} spreads refused")

    big_rng = random.Random(7)
    count = 20
    everything = [c._replace(current=0) for c in clusters]
    for total in (5_000, 100_000):
        seconds = best_of(3, repeat(count, partial(plan_replicas, total, everything)))
        report(f"all 1,000 clusters, {total:,} replicas, fresh", count, seconds)
        base = plan_replicas(total, everything)
        sick = set(big_rng.sample(range(len(everything)), 10))
        failover = [
            c._replace(current=base.replicas[c.name], healthy=c.healthy and i not in sick)
            for i, c in enumerate(everything)
        ]
        seconds = best_of(3, repeat(count, partial(plan_replicas, total, failover)))
        report(f"all 1,000 clusters, {total:,} replicas, 10 clusters fail", count, seconds)
        request = PlacementRequest(
            total=total, clusters=[ClusterCandidate(**c._asdict()) for c in everything]
        )
        seconds = best_of(3, repeat(count, partial(plan, request)))
        report(f"all 1,000 clusters, {total:,} replicas, models", count, seconds)
        policy = policies[0]
        seconds = best_of(
            3, repeat(count, partial(schedule, total, failover, labels, policy, workload="b/w"))
        )
        report(f"all 1,000 clusters, {total:,} replicas, scheduled", count, seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
