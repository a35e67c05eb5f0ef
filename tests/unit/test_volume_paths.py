"""Which volume directories the mover may touch: the rules of ``fleetflow.volume_paths``."""

from __future__ import annotations

import posixpath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleetflow.volume_paths import (
    ClaimRef,
    VolumeSeen,
    directory_of,
    inside,
    overlap_problem,
    overlaps,
    volume_problem,
)

ROOTS = {"fleetflow-local": "/tmp/hostpath_pv"}
CLAIM = ClaimRef(namespace="shop", name="data-ledger-0", uid="u1")


def seen(
    real: str | None = "/tmp/hostpath_pv/a",
    *,
    member: str = "m1",
    volume: str = "pv-a",
    storage_class: str = "fleetflow-local",
    directory: str | None = "",
    claim: ClaimRef | None = CLAIM,
    symlink: bool = False,
) -> VolumeSeen:
    return VolumeSeen(
        member=member,
        volume=volume,
        storage_class=storage_class,
        directory=real if directory == "" else directory,
        real=real,
        symlink=symlink,
        claim=claim,
    )


def test_a_volume_bound_to_our_claim_inside_its_root_is_taken() -> None:
    assert volume_problem(seen(), CLAIM, ROOTS) is None


@pytest.mark.parametrize(
    ("volume", "refused"),
    [
        (seen("/tmp/hostpath_pv"), "not inside the volume root"),  # the root holds every volume
        (seen("/etc"), "not inside the volume root /tmp/hostpath_pv"),
        (seen("/tmp/hostpath_pv-other/a"), "not inside"),  # a prefix is not a parent
        # The member wrote the root followed by ``..``: what counts is where it resolves.
        (seen("/etc", directory="/tmp/hostpath_pv/../../etc"), "resolves to /etc"),
        (seen(symlink=True), "is a symbolic link"),
        (seen(storage_class="manual"), "no volume root is declared for its storage class"),
        (seen(storage_class=""), "no volume root is declared"),
        (seen(claim=None), "bound to no claim"),
        (seen(claim=ClaimRef(namespace="kube-system", name="x", uid="u1")), "bound to"),
        (seen(claim=CLAIM.model_copy(update={"uid": "u0"})), "an earlier claim of that name"),
        (seen(directory=None), "not a directory on this machine"),
    ],
)
def test_a_volume_the_mover_may_not_touch_is_refused_with_its_reason(
    volume: VolumeSeen, refused: str
) -> None:
    problem = volume_problem(volume, CLAIM, ROOTS)
    assert problem is not None and refused in problem
    assert "pv-a" in problem and "shop/data-ledger-0" in problem


def test_a_missing_root_says_where_to_declare_it() -> None:
    problem = volume_problem(seen(member="us-east-1", storage_class="gp3"), CLAIM, ROOTS)
    assert problem is not None
    assert "'gp3'" in problem and "volume_roots of us-east-1's KubeCluster block" in problem


def test_a_claim_ref_without_uid_is_judged_by_namespace_and_name() -> None:
    """A volume pre-bound by name (no uid yet) binds the claim we make: the root decides."""
    prebound = seen(claim=CLAIM.model_copy(update={"uid": ""}))
    assert volume_problem(prebound, CLAIM, ROOTS) is None


@pytest.mark.parametrize(
    ("source", "target", "shared"),
    [
        ("/r/a", "/r/a", True),  # two local volumes given one path: a copy onto itself
        ("/r/a", "/r/a/b", True),  # the target inside the source
        ("/r/a/b", "/r/a", True),  # the source inside the target: --delete would eat it
        ("/r/a", "/r/ab", False),
        ("/r/a", "/r/b", False),
    ],
)
def test_the_two_sides_never_share_a_directory(source: str, target: str, shared: bool) -> None:
    mine = [seen(source, member="m1", volume="pv-s"), seen(target, member="m2", volume="pv-t")]
    problem = overlap_problem(mine, [])
    assert (problem is not None) is shared
    if shared:
        assert "m1: volume pv-s and m2: volume pv-t share a directory" in str(problem)


def test_a_side_that_points_at_another_claims_volume_is_refused() -> None:
    mine = [seen("/r/s", volume="pv-s"), seen("/r/t", member="m2", volume="pv-t")]
    third = seen("/r/t", member="m3", volume="pv-other", claim=None)
    problem = overlap_problem(mine, [third])
    assert problem is not None and "m3: volume pv-other (a volume of another claim)" in problem
    assert overlap_problem(mine, [seen("/r/u", member="m3", volume="pv-u")]) is None


def test_the_directory_is_a_hostpath_or_local_volumes_and_nothing_else() -> None:
    assert directory_of({"spec": {"hostPath": {"path": "/a"}}}) == "/a"
    assert directory_of({"spec": {"local": {"path": "/b"}}}) == "/b"
    assert directory_of({"spec": {"csi": {"driver": "x"}}}) is None


def test_a_volume_reads_its_claim_ref_and_class_from_the_object() -> None:
    pv = {
        "metadata": {"name": "pv-1"},
        "spec": {
            "storageClassName": "fleetflow-local",
            "hostPath": {"path": "/tmp/hostpath_pv/x"},
            "claimRef": {"namespace": "shop", "name": "data-ledger-0", "uid": "u1"},
        },
    }
    found = VolumeSeen.of("m1", pv, "/tmp/hostpath_pv/x", False)
    assert found.claim == CLAIM and found.storage_class == "fleetflow-local"
    assert volume_problem(found, CLAIM, ROOTS) is None


segment = st.sampled_from(["a", "b", "ab", "..", ".", "a.b"])
paths = st.lists(segment, max_size=5).map(lambda parts: posixpath.normpath("/" + "/".join(parts)))


@given(paths, paths)
def test_overlap_is_what_a_recursive_walk_would_share(a: str, b: str) -> None:
    """Two normalised paths overlap exactly when one is a prefix of the other by whole
    components; ``inside`` is strict and never both ways."""
    pa, pb = a.strip("/").split("/"), b.strip("/").split("/")
    pa, pb = [p for p in pa if p], [p for p in pb if p]
    prefix = pa[: len(pb)] == pb or pb[: len(pa)] == pa
    assert overlaps(a, b) is prefix
    assert not (inside(a, b) and inside(b, a))
    assert inside(a, b) is (pa[: len(pb)] == pb and len(pa) > len(pb))
