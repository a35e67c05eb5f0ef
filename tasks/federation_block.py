"""Edit the Federation block one run at a time.

Join, unjoin and bootstrap each change the block (a member listed, unlisted, the host's
settings). A Prefect block has no conditional write: a run that saved the copy it read at its
start would undo what another run saved meanwhile (two joins at once: the last to save drops the
other's member, which every flow then refuses until it is rejoined). So the block is read again
and saved while the lease on the federation's block in the host is held: each edit starts from
the one before it.
"""

from __future__ import annotations

from collections.abc import Callable

from fleetflow.blocks import Federation, KubeCluster
from fleetflow.blocks.loading import find_federation
from fleetflow.models import Action, Verb
from fleetflow.settings import settings
from fleetflow.tasks.clusters import save_block
from fleetflow.tasks.leases import holding, run_identity


def block_lease(federation: str) -> str:
    return f"fleetflow-federation-block-{federation}"


def edit_federation(
    host: KubeCluster,
    namespace: str,
    name: str,
    change: Callable[[Federation | None], Federation | None],
    dry_run: bool = False,
) -> Action:
    """Save ``change`` of the Federation block as it is now (None: there is none), holding the
    lease on the block in ``namespace`` of ``host``; a change to None saves nothing. Another run
    holds the lease for a moment only; a run that crashed holding it lets it go once it lapses,
    so this waits up to twice that."""
    if dry_run:  # nothing is written: no lease to hold (bootstrap's namespace may not exist)
        return _save(change(find_federation(name)), name, dry_run=True)
    duration = settings().lease_duration
    refusal = (
        f"another run kept editing federation {name}'s block for over {2 * duration}s "
        f"(its lease {block_lease(name)} in {namespace} on the host was renewed all along): "
        "run again once it ends"
    )
    with holding(
        host,
        namespace,
        block_lease(name),
        run_identity(),
        duration=duration,
        refusal=refusal,
        wait=2 * duration,
    ) as held:
        edited = change(find_federation(name))
        held.check()
        return _save(edited, name)


def _save(edited: Federation | None, name: str, dry_run: bool = False) -> Action:
    if edited is None:  # the block was deleted meanwhile: a member's flow never makes it again
        return Action(cluster="prefect", kind="Federation block", name=name, verb=Verb.ABSENT)
    return save_block(edited, name, dry_run)
