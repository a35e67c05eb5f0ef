"""Which volume directories the mover may read, overwrite and delete under. Pure.

A PersistentVolume's ``hostPath``/``local.path`` is what its member says; the member may be
wrong (two ``local`` volumes given one path) or hostile (a volume it bound to the claim we made,
pointing at ``/etc`` or at the stack's own database). rsync runs ``--delete`` on the target and
verification discards files under it, so a directory is taken only when:

- the volume is bound to the very claim we made or read (``claimRef`` namespace, name and uid);
- its storage class has a root declared for this member (``KubeCluster.volume_roots``), and the
  directory, resolved on this machine, lies strictly inside that root (never the root itself,
  which holds every other volume);
- it is not itself a symbolic link (what it points to can change after the check);
- it neither equals, contains nor lies inside the other side's directory, or any other volume
  the federation's members report.

Resolution (``realpath``) is the caller's I/O; this module decides on what it found. The mover
then works on the resolved paths, never on what the member wrote.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

from pydantic import BaseModel


class ClaimRef(BaseModel):
    """A claim's identity, as a volume's ``claimRef`` names it."""

    namespace: str
    name: str
    uid: str

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


class VolumeSeen(BaseModel):
    """One PersistentVolume as its member reports it, and where its directory resolves here."""

    member: str
    volume: str
    storage_class: str = ""
    directory: str | None = None
    """``hostPath.path`` or ``local.path`` as written; None for a volume of another kind."""
    real: str | None = None
    """The directory resolved on this machine (symbolic links followed, ``..`` folded)."""
    symlink: bool = False
    """The directory itself is a symbolic link."""
    claim: ClaimRef | None = None

    @property
    def where(self) -> str:
        return f"{self.member}: volume {self.volume}"

    @classmethod
    def of(
        cls, member: str, volume: Mapping[str, Any], real: str | None, symlink: bool
    ) -> VolumeSeen:
        """From the PersistentVolume object, with what the caller found on disk."""
        spec = volume.get("spec") or {}
        ref = spec.get("claimRef") or {}
        claim = (
            ClaimRef(namespace=ref["namespace"], name=ref["name"], uid=ref.get("uid") or "")
            if ref.get("namespace") and ref.get("name")
            else None
        )
        return cls(
            member=member,
            volume=str(volume["metadata"]["name"]),
            storage_class=str(spec.get("storageClassName") or ""),
            directory=directory_of(volume),
            real=real,
            symlink=symlink,
            claim=claim,
        )


def directory_of(volume: Mapping[str, Any]) -> str | None:
    """Where a PersistentVolume keeps its data on its machine: a hostPath or local volume's
    directory, as written; None for any other kind (the mover cannot reach it)."""
    spec = volume.get("spec") or {}
    path = (spec.get("hostPath") or {}).get("path") or (spec.get("local") or {}).get("path")
    return str(path) if path else None


def inside(path: str, root: str) -> bool:
    """``path`` lies strictly under ``root`` (both absolute and resolved); by whole path
    components, so ``/data/vol-10`` is not inside ``/data/vol-1``."""
    p, r = PurePosixPath(path), PurePosixPath(root)
    return p != r and r in p.parents


def overlaps(a: str, b: str) -> bool:
    """The two directories are one, or one holds the other: a copy between them, or a deletion
    under one, touches the other."""
    return a == b or inside(a, b) or inside(b, a)


def volume_problem(seen: VolumeSeen, claim: ClaimRef, roots: Mapping[str, str]) -> str | None:
    """Why the mover may not touch this claim's volume (None: it may). ``roots``: the member's
    declared root per storage class, resolved on this machine."""
    where = f"{seen.where} of claim {claim}"
    if seen.claim is None or (seen.claim.namespace, seen.claim.name) != (
        claim.namespace,
        claim.name,
    ):
        return f"{where} is bound to {seen.claim or 'no claim'}, not to {claim}"
    if seen.claim.uid and claim.uid and seen.claim.uid != claim.uid:
        return f"{where} is bound to an earlier claim of that name (uid {seen.claim.uid})"
    if seen.directory is None:
        return (
            f"{where} is not a directory on this machine (hostPath or local): the rsync mover "
            "copies between those only"
        )
    root = roots.get(seen.storage_class)
    if root is None:
        declared = ", ".join(sorted(roots)) or "none"
        return (
            f"{where}: no volume root is declared for its storage class "
            f"{seen.storage_class or '(none)'!r} (declared: {declared}); add it to the "
            f"volume_roots of {seen.member}'s KubeCluster block if the mover may work there"
        )
    if seen.symlink:
        return f"{where}: its directory {seen.directory} is a symbolic link"
    if seen.real is None or not inside(seen.real, root):
        resolved = f" (resolves to {seen.real})" if seen.real not in (None, seen.directory) else ""
        return (
            f"{where}: its directory {seen.directory}{resolved} is not inside the volume root "
            f"{root} declared for storage class {seen.storage_class!r}"
        )
    return None


def overlap_problem(mine: list[VolumeSeen], others: list[VolumeSeen]) -> str | None:
    """Why these volumes may not be copied between (None: they may): two of them share a
    directory or hold one another, or one of them shares with another volume a member
    reports. ``mine``: both sides' volumes, each resolved; ``others``: every other volume."""
    for i, a in enumerate(mine):
        for b in mine[i + 1 :]:
            if a.real and b.real and overlaps(a.real, b.real):
                return f"{a.where} and {b.where} share a directory ({a.real}, {b.real})"
        for other in others:
            if a.real and other.real and overlaps(a.real, other.real):
                return (
                    f"{a.where} and {other.where} (a volume of another claim) share a directory "
                    f"({a.real}, {other.real})"
                )
    return None
