"""Federated autoscaling: run by hand, ``.venv/bin/python bench/bench_autoscale.py [--planner]``.

Figures:

* **planner**: the division of 10,000 autoscaled workloads over 100 members each (every member
  with an HPA already, a tenth of them at their max and wanting more, some members down), the
  same pure step a rebalance run makes; budget: under 1 s. A tenth of the size first, for its
  peak memory.
* **on the test bed** (its own bed and Prefect server): the time from a load change in one
  member to its HPA reacting (scaled to its max and limited), to the rebalance run that moves
  budget there, and to the HPA scaling into its new max; then the writes of a rebalance run in
  steady state (want 0).
"""

from __future__ import annotations

import random
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from fleetflow.autoscaling import Autoscaler, AutoscalingSpec, divide
from fleetflow.placement import Candidate

BUDGET = 1.0
WORKLOADS = 10_000
MEMBERS = 100
SPREAD = (3, 10)
"""As the placement benchmark draws them: each workload over 3-10 members of the fleet."""


def workloads(
    rng: random.Random, count: int, members: int, spread: tuple[int, int] | None = None
) -> list[tuple[AutoscalingSpec, list[Candidate], dict[str, Autoscaler], dict[str, int]]]:
    """Autoscaled workloads over a federation of ``members``, each over all of them or over
    ``spread`` (a range) of them, with their HPAs as last written; one member in fifty down."""
    fleet = [f"member-{i:03}" for i in range(members)]
    down = set(rng.sample(fleet, max(1, members // 50)))
    out = []
    for _ in range(count):
        names = rng.sample(fleet, rng.randint(*spread)) if spread else fleet
        high = rng.randint(len(names), len(names) * 4)
        spec = AutoscalingSpec(
            min_replicas=rng.randint(1, len(names)),
            max_replicas=high,
            max_budget_move=max(1, high // 10),
            hysteresis=1,
        )
        cands = [Candidate(name=n, weight=rng.randint(1, 5), healthy=n not in down) for n in names]
        # As the last run wrote them (every member up then): the first division, then each
        # HPA at its own load; since then, one member in fifty went down.
        up = [c._replace(healthy=True) for c in cands]
        first = divide(spec, up, {}, workload="ns/w", replicas=1)
        seen = {}
        for n, share in first.shares.items():
            busy = rng.random() < 0.1
            used = share.max if busy else rng.randint(1, share.max)
            seen[n] = Autoscaler(
                min=share.min,
                max=share.max,
                current=used,
                desired=used,
                wanted=used * 2 if busy else used,
                limited=busy,
            )
        out.append((spec, cands, seen, {n: a.current for n, a in seen.items()}))
    return out


CHUNK = 1_000
"""Workloads made, divided and dropped at a time: the inputs of 10,000 workloads over 100
members each would hold a million HPA models at once (1.9 GB); only the division is timed."""


def planner(count: int, members: int, spread: tuple[int, int] | None = None) -> None:
    best = float("inf")
    moved = 0
    for _ in range(3):
        rng = random.Random(7)
        spent, moved = 0.0, 0
        for first in range(0, count, CHUNK):
            work = workloads(rng, min(CHUNK, count - first), members, spread)
            started = time.perf_counter()
            budgets = [
                divide(spec, cands, seen, workload=f"ns/w{first + i}", replicas=1, running=running)
                for i, (spec, cands, seen, running) in enumerate(work)
            ]
            spent += time.perf_counter() - started
            moved += sum(len(b.moves) for b in budgets)
        best = min(best, spent)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    verdict = "ok" if count < WORKLOADS or best < BUDGET else f"OVER the {BUDGET:g} s budget"
    each = f"{spread[0]}-{spread[1]} of {members}" if spread else f"all {members}"
    print(
        f"planner: {count:,} autoscaled workloads, each over {each} members: {best:.3f} s "
        f"(best of 3), {moved:,} budget moves, peak RSS {peak:.0f} MB  [{verdict}]"
    )


def on_testbed() -> None:
    from bench import harness  # sets FLEETFLOW_HOME before fleetflow reads its settings
    from fleetflow.flows.rebalance import rebalance_replicas
    from fleetflow.kube import api_client, apply, get
    from fleetflow.models import RebalanceRequest
    from fleetflow.polling import poll_until
    from fleetflow.testbed import bed
    from fleetflow.testbed.demo import federated_deployment
    from fleetflow.testbed.metrics import USAGE_CPU_ANNOTATION

    namespace = "bench"
    spec = harness.bench_spec()
    with harness.federated("autoscale", namespace, spec) as host:
        a, b, c = (m.name for m in spec.members)

        def fd(load: bool) -> dict:
            body = federated_deployment("autoscale", "web", namespace, 3, cpu="100m")
            body["spec"]["autoscaling"] = {
                "minReplicas": 3,
                "maxReplicas": 12,
                "maxBudgetMove": 4,
                "metrics": [
                    {
                        "type": "Resource",
                        "resource": {
                            "name": "cpu",
                            "target": {"type": "Utilization", "averageUtilization": 50},
                        },
                    }
                ],
            }
            if load:
                annotations = {USAGE_CPU_ANNOTATION: "200m"}
                patch = {"spec": {"template": {"metadata": {"annotations": annotations}}}}
                body["spec"]["overrides"] = [{"clusterName": c, "patch": patch}]
            return body

        def run() -> object:
            return rebalance_replicas(RebalanceRequest(federation="autoscale", namespace=namespace))

        def status(member: str) -> dict:
            member_api = api_client(bed.credentials(member))
            hpa = get(member_api, "autoscaling/v2", "HorizontalPodAutoscaler", "web", namespace)
            return hpa.get("status") or {}

        def limited(member: str) -> bool:
            found = status(member)
            return any(
                x["type"] == "ScalingLimited" and x["status"] == "True"
                for x in found.get("conditions") or []
            ) and found.get("currentReplicas") == found.get("desiredReplicas")

        apply(host, fd(load=False))
        run()
        poll_until(
            lambda: status(c).get("currentMetrics"),
            bool,
            timeout=120,
            waiting_for="metrics for the idle workload",
        )
        started = time.monotonic()
        apply(host, fd(load=True))
        run()  # c's pods get the load annotation
        poll_until(lambda: limited(c), bool, timeout=180, waiting_for=f"{c}'s HPA at its max")
        reacted = time.monotonic() - started
        run()
        moved = time.monotonic() - started
        poll_until(
            lambda: status(c).get("currentReplicas"),
            lambda n: n == 8,
            timeout=120,
            waiting_for=f"{c} at its new max",
        )
        grown = time.monotonic() - started
        poll_until(lambda: limited(c), bool, timeout=60, waiting_for=f"{c} limited at 8")
        run()
        writes = [len(run().actions) for _ in range(3)]  # type: ignore[attr-defined]
        print(
            f"test bed: load up in {c} -> its HPA at its max and limited {reacted:.1f} s, "
            f"budget moved by the next run {moved:.1f} s, HPA at its new max 8 {grown:.1f} s"
        )
        print(f"test bed: writes per rebalance run in steady state: {writes} (want 0)")
        _ = (a, b)


def main() -> None:
    planner(WORKLOADS // 10, MEMBERS, SPREAD)
    planner(WORKLOADS, MEMBERS, SPREAD)
    planner(WORKLOADS // 10, MEMBERS)
    planner(WORKLOADS, MEMBERS)
    if "--planner" not in sys.argv:
        on_testbed()


if __name__ == "__main__":
    main()
