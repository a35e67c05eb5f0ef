"""Steps of a migration: claims on the target, the volumes' directories, rsync passes, the
source stopped, sha256 manifests, the host's placement; each one I/O step."""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from prefect import get_run_logger, task

from fleetflow import checksums, rsync
from fleetflow.blocks import KubeCluster
from fleetflow.controlplane import API_VERSION, Manifest
from fleetflow.errors import MigrationRefused, ResourceNotFound, TransferFailed
from fleetflow.federated import ANNOTATION_MIGRATION, FederatedDeployment
from fleetflow.kube import apply, delete, get, list_objects
from fleetflow.migration import foreign_claims
from fleetflow.models import Action, Verb
from fleetflow.polling import poll_until
from fleetflow.rsync import Pass
from fleetflow.tasks.clusters import client, cluster_name
from fleetflow.tasks.common import CLUSTER_TASK, PRIVATE
from fleetflow.tasks.rebalance import apply_in_namespace
from fleetflow.volume_paths import (
    ClaimRef,
    VolumeSeen,
    directory_of,
    inside,
    overlap_problem,
    volume_problem,
)

MIGRATION_MANAGER = "fleetflow-migration"
"""The field manager of what a migration sets on a FederatedDeployment (its hold, and the
target as its placement), apart from the rest of the object."""

Pairs = list[tuple[str, str, str]]
"""Per claim: its name, the source volume's directory, the target volume's."""


def _seen(member: str, volume: Manifest) -> VolumeSeen:
    """The volume as its member reports it, and where its directory resolves here."""
    directory = directory_of(volume)
    real, link = rsync.resolved(directory) if directory else (None, False)
    return VolumeSeen.of(member, volume, real, link)


@task(**CLUSTER_TASK)
def claim_volumes(
    block: KubeCluster, where: str, namespace: str, claims: list[str]
) -> dict[str, VolumeSeen]:
    """Each claim's volume, its directory resolved on this machine; ``where``: the member's
    name. A volume that is no directory here is ``TransferFailed``; one the mover may not touch
    (``volume_paths.volume_problem``) is refused, before anything is copied."""
    api = client(block)
    roots = {kind: rsync.resolved(root)[0] for kind, root in block.volume_roots.items()}
    found = {}
    for claim in claims:
        pvc = get(api, "v1", "PersistentVolumeClaim", claim, namespace)
        volume_name = (pvc.get("spec") or {}).get("volumeName")
        if not volume_name or (pvc.get("status") or {}).get("phase") != "Bound":
            raise TransferFailed(f"{where}: claim {namespace}/{claim} is not bound to a volume yet")
        seen = _seen(where, get(api, "v1", "PersistentVolume", volume_name))
        if seen.directory is None:
            raise TransferFailed(
                f"{where}: claim {namespace}/{claim}'s volume {volume_name} is not a directory on "
                "this machine (hostPath or local): the rsync mover copies between those only"
            )
        ref = ClaimRef(namespace=namespace, name=claim, uid=pvc["metadata"].get("uid") or "")
        if problem := volume_problem(seen, ref, roots):
            raise MigrationRefused(
                f"{problem}: the mover will not touch it; nothing was copied or deleted"
            )
        found[claim] = seen
    return found


@task(**CLUSTER_TASK)
def other_volumes(block: KubeCluster, where: str, besides: list[str]) -> list[VolumeSeen]:
    """Every directory volume of a member but those named ``besides``, resolved here: what a
    copy must not touch."""
    volumes = list_objects(client(block), "v1", "PersistentVolume")
    return [
        _seen(where, v)
        for v in volumes
        if v["metadata"]["name"] not in besides and directory_of(v) is not None
    ]


def volume_pairs(
    source: KubeCluster,
    where: str,
    target: KubeCluster,
    there: str,
    namespace: str,
    claims: list[str],
    members: dict[str, KubeCluster],
) -> Pairs:
    """Per claim, the source's (on ``where``) and the target's (on ``there``) directories,
    resolved on this machine; refused unless the mover may touch them: each bound to its claim
    inside its declared root, and none sharing a directory with another or with any volume the
    ``members`` (those that answered) report."""
    theirs = claim_volumes(source, where, namespace, claims)
    ours = claim_volumes(target, there, namespace, claims)
    mine = [*theirs.values(), *ours.values()]
    others = [
        volume
        for member, block in members.items()
        for volume in other_volumes(block, member, [v.volume for v in mine if v.member == member])
    ]
    if problem := overlap_problem(mine, others):
        raise MigrationRefused(
            f"{problem}: the mover will not touch them; nothing was copied or deleted"
        )
    return [(c, str(theirs[c].real), str(ours[c].real)) for c in claims]


def check_retained(
    source: KubeCluster,
    where: str,
    target: KubeCluster,
    there: str,
    namespace: str,
    claims: list[str],
) -> None:
    """Before the source's kept claims are deleted (their volumes with them): each that is
    still there must be one the mover may touch, and the target's copy of each must exist
    and share no directory with it: deleting a volume that holds the copy deletes the copy."""
    wanted = [_claim(c, namespace) for c in claims]
    present = sorted(_claims(client(source), wanted))
    if missing := sorted(set(claims) - set(_claims(client(target), wanted))):
        raise MigrationRefused(
            f"{there} has no claim {', '.join(missing)} in {namespace} any more: {where}'s may "
            "hold the only copy of its data; nothing deleted (delete it by hand once you know)"
        )
    # The migration's own rule: inside their roots, and none sharing a directory with its copy.
    volume_pairs(source, where, target, there, namespace, present, {})


def _claim(name: str, namespace: str) -> Manifest:
    return {"metadata": {"name": name, "namespace": namespace}}


@task(**CLUSTER_TASK)
def used_bytes(block: KubeCluster, where: str, namespace: str, claims: list[str]) -> int | None:
    """What the claims hold, when their volumes are directories on this machine; else None
    (the plan then scores what they ask for). A volume the mover may not touch is refused."""
    try:
        found = claim_volumes.fn(block, where, namespace, claims)
    except TransferFailed:
        return None
    return sum(checksums.usage(Path(v.real)) for v in found.values() if v.real)


def _claims(api: Any, manifests: list[Manifest]) -> dict[str, Manifest]:
    """The claims of these names that exist, by name."""
    found = {}
    for manifest in manifests:
        name, namespace = manifest["metadata"]["name"], manifest["metadata"]["namespace"]
        with contextlib.suppress(ResourceNotFound):
            found[name] = get(api, "v1", "PersistentVolumeClaim", name, namespace)
    return found


@task(**CLUSTER_TASK)
def refuse_foreign_claims(block: KubeCluster, where: str, manifests: list[Manifest]) -> None:
    """Refuse, before any write, claims of the names the migration would make that are not
    ours (their contents would be replaced)."""
    if refusal := foreign_claims(_claims(client(block), manifests), manifests, where):
        raise MigrationRefused(refusal)


@task(**CLUSTER_TASK)
def provision_claims(
    block: KubeCluster, where: str, manifests: list[Manifest], timeout: float, dry_run: bool
) -> list[Action]:
    """Create the claims (ours already there are kept as they are: a claim's spec cannot
    change once made) and wait until each is bound to its volume."""
    api = client(block)
    found = _claims(api, manifests)
    actions = []
    for manifest in manifests:
        exists = manifest["metadata"]["name"] in found
        if not exists and not dry_run:
            apply_in_namespace(api, manifest)
        actions.append(Action.of(where, manifest, Verb.UNCHANGED if exists else Verb.CREATE))
    if dry_run or not manifests:
        return actions
    namespace = manifests[0]["metadata"]["namespace"]
    names = {m["metadata"]["name"] for m in manifests}

    def unbound() -> list[str]:
        claims = list_objects(api, "v1", "PersistentVolumeClaim", namespace)
        bound = {
            c["metadata"]["name"] for c in claims if (c.get("status") or {}).get("phase") == "Bound"
        }
        return sorted(names - bound)

    poll_until(
        unbound,
        lambda left: not left,
        timeout=timeout,
        interval=0.25,
        waiting_for=f"claims bound in {where}",
        describe=lambda left: f"unbound: {', '.join(left)}",
        hint="check that the claims' StorageClass exists there and can provision",
    )
    return actions


@task(**PRIVATE)
def copy_round(
    pairs: Pairs,
    number: str,
    bwlimit_mbps: float | None,
    keep_going: Callable[[], None] | None = None,
) -> Pass:
    """One rsync pass over every volume, its progress in the run's log while it copies;
    ``keep_going`` raises to stop it at once (the run's lease is lost)."""
    logger = get_run_logger()
    total = Pass()
    for claim, source, target in pairs:

        def say(line: str, claim: str = claim) -> None:
            logger.info(f"round {number}, {claim}: {line}")

        done = rsync.sync(
            Path(source),
            Path(target),
            bwlimit_mbps=bwlimit_mbps,
            progress=say,
            keep_going=keep_going,
        )
        logger.info(f"round {number}, {claim}: {done.bytes:,} bytes in {done.files} files")
        total += done
    return total


@task(**PRIVATE)
def changed_since(pairs: Pairs) -> Pass:
    """What a pass would send now (its ``size``: the files it would update, whole), and how
    long finding it took: rsync's dry run."""
    return sum((rsync.sync(Path(s), Path(t), dry_run=True) for _c, s, t in pairs), Pass())


@task(**PRIVATE)
def manifests(pairs: Pairs) -> tuple[dict[str, str], dict[str, str]]:
    """Both sides' sha256 manifests, paths prefixed by their claim; both sides at once."""

    def side(index: int) -> dict[str, str]:
        found: dict[str, str] = {}
        for pair in pairs:
            for path, digest in checksums.manifest(Path(pair[index])).items():
                found[f"{pair[0]}/{path}"] = digest
        return found

    with ThreadPoolExecutor(max_workers=2) as pool:
        source, target = pool.map(side, (1, 2))
    return source, target


@task(**PRIVATE)
def discard_copies(pairs: Pairs, paths: list[str]) -> None:
    """Remove target files that do not match the source, so that the next pass copies them
    whole (rsync's quick check would trust a same-sized, same-dated file). Never the source."""
    targets = {claim: Path(target) for claim, _source, target in pairs}
    for path in paths:
        claim, _, relative = path.partition("/")
        victim = targets[claim] / relative
        # A link among the target's folders (the copy makes what the source has) must not
        # lead the removal out of the target: only what resolves inside it goes.
        folder, root = rsync.resolved(str(victim.parent))[0], str(targets[claim])
        if folder != root and not inside(folder, root):
            continue
        if victim.is_dir() and not victim.is_symlink():
            shutil.rmtree(victim)
        else:
            with contextlib.suppress(FileNotFoundError):
                victim.unlink()


@task(**CLUSTER_TASK)
def stop_workload(
    block: KubeCluster, where: str, namespace: str, name: str, timeout: float
) -> Action:
    """Scale the StatefulSet to 0 and wait until none of its pods is left (writes stopped)."""
    api = client(block)
    k8s.AppsV1Api(api).patch_namespaced_stateful_set_scale(
        name, namespace, {"spec": {"replicas": 0}}
    )

    def left() -> int:
        """Pods left, or still counted Ready: traffic follows Ready replicas, so the source
        must be stopped in its status too before the target is started."""
        status = get(api, "apps/v1", "StatefulSet", name, namespace).get("status") or {}
        return max(int(status.get("replicas") or 0), int(status.get("readyReplicas") or 0))

    poll_until(
        left,
        lambda n: n == 0,
        timeout=timeout,
        interval=0.25,
        waiting_for=f"{namespace}/{name} stopped in {where}",
        describe=lambda n: f"{n} pods left",
    )
    return Action(
        cluster=where, kind="StatefulSet scale", name=name, namespace=namespace, verb=Verb.UPDATE
    )


@task(**CLUSTER_TASK)
def running_replicas(block: KubeCluster, namespace: str, name: str) -> int:
    """Replicas the member's StatefulSet asks for now (0 when it has none)."""
    try:
        live = get(client(block), "apps/v1", "StatefulSet", name, namespace)
    except ResourceNotFound:
        return 0
    return int((live.get("spec") or {}).get("replicas") or 0)


@task(**CLUSTER_TASK)
def hold_workload(
    host: KubeCluster, fd: FederatedDeployment, operation: str | None, clusters: list[str] | None
) -> Action:
    """Hold the workload for the migration ``operation`` (rebalance and failover leave it as it
    runs), or with None release it; its placement's clusters set to ``clusters``. This field
    manager always sets the clusters it means: leaving them out of an apply would delete them."""
    meta: dict[str, Any] = {"name": fd.name, "namespace": fd.namespace}
    if operation:
        meta["annotations"] = {ANNOTATION_MIGRATION: operation}
    patch: Manifest = {"apiVersion": API_VERSION, "kind": "FederatedDeployment", "metadata": meta}
    if clusters is not None:
        patch["spec"] = {"placement": {"clusters": clusters}}
    apply(client(host), patch, manager=MIGRATION_MANAGER)
    return Action(
        cluster=cluster_name(host),
        kind="FederatedDeployment migration hold",
        name=fd.name,
        namespace=fd.namespace,
        verb=Verb.CREATE if operation else Verb.DELETE,
    )


@task(**CLUSTER_TASK)
def delete_claims(
    block: KubeCluster, where: str, namespace: str, claims: list[str], dry_run: bool
) -> list[Action]:
    """Delete the claims (their volumes go with them, as their StorageClass says)."""
    api = client(block)
    actions = []
    for claim in claims:
        if dry_run:
            try:
                get(api, "v1", "PersistentVolumeClaim", claim, namespace)
            except ResourceNotFound:
                continue
            gone = True
        else:
            gone = delete(api, "v1", "PersistentVolumeClaim", claim, namespace)
        if gone:
            actions.append(
                Action(
                    cluster=where,
                    kind="PersistentVolumeClaim",
                    name=claim,
                    namespace=namespace,
                    verb=Verb.DELETE,
                )
            )
    return actions
