"""What ``fleetflow status`` and the ``federation-status`` artifact show: one row per federated
workload or object and member, with its state there. Pure: built from the host's objects.

The states are those the last propagating run recorded in each object's status (the host holds
them; nothing here asks a member). A row whose ``member`` is None speaks for the object as a
whole: not placed yet, being deleted, invalid, replicas that fit nowhere. An object the host
holds but fleetflow cannot read is one ``Invalid`` row with the reason, never a crash: one bad
object must not hide the state of all the others.

Rows carry names, kinds, states, counts and the messages fleetflow itself wrote: never a
template's content, so a federated Secret's data cannot reach a terminal or an artifact.
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable, Iterable, Sequence
from enum import StrEnum
from typing import Any, Final, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fleetflow.errors import InvalidRequest
from fleetflow.federated import FederatedDeployment
from fleetflow.objects import FederatedObject, MemberState
from fleetflow.wire import Condition

WORKLOAD: Final = "FederatedDeployment"
OBJECT: Final = "FederatedObject"  # fleetflow.objects.KIND, as a literal the row's type can name
Kind = Literal["FederatedDeployment", "FederatedObject"]


class State(StrEnum):
    """A workload's state on a member, or an object's as a whole. A FederatedObject's state on
    a member is its ``MemberState`` (Applied, Unchanged, Drifted, Conflict, Failed, Unreachable,
    MissingKind)."""

    READY = "Ready"  # every replica placed on the member was Ready
    PROGRESSING = "Progressing"  # fewer (or more) Ready than placed: scaling, or not Ready yet
    IDLE = "Idle"  # nothing placed there (no replicas, or on no member at all)
    PENDING = "Pending"  # not propagated since it was created or changed
    UNPLACED = "Unplaced"  # replicas that fit on no member
    DELETING = "Deleting"  # deleted in the host; waiting for its members to be cleaned
    INVALID = "Invalid"  # cannot be read or planned: the message says why


SETTLED: frozenset[State | MemberState] = frozenset(
    {State.READY, State.IDLE, MemberState.APPLIED, MemberState.UNCHANGED, MemberState.DRIFTED}
)
"""States that need nobody: a drift was put back by the run that found it."""

STATE_HELP: dict[State | MemberState, str] = {
    State.READY: "workload: every replica placed on the member is Ready",
    State.PROGRESSING: "workload: fewer (or more) replicas Ready than placed on the member",
    State.IDLE: "no replicas on the member, or the object is placed on no member",
    State.PENDING: "created or changed since the last run; the next run propagates it",
    State.UNPLACED: "workload: replicas that fit on no member",
    State.DELETING: "deleted in the host; waits until its members are cleaned",
    State.INVALID: "cannot be read or planned; the message says why",
    MemberState.APPLIED: "object: created, updated or adopted by the last run",
    MemberState.UNCHANGED: "object: already as desired; nothing was sent",
    MemberState.DRIFTED: "object: edited by hand on the member; put back",
    MemberState.CONFLICT: "object: one of that name that fleetflow does not own; left alone",
    MemberState.FAILED: "object: the member refused the write",
    MemberState.UNREACHABLE: "object: the member did not answer",
    MemberState.MISSING_KIND: "object: the member does not serve its kind (no CRD)",
}
"""One line per state, for ``fleetflow status --help`` and the README."""


class StatusRow(BaseModel):
    """One federated workload or object on one member (or, ``member`` None, as a whole)."""

    model_config = ConfigDict(frozen=True)

    namespace: str
    kind: Kind
    name: str
    template_kind: str = Field(
        description="What the members get: Deployment, ConfigMap, ...; empty when unreadable"
    )
    member: str | None = Field(default=None, description="None: the object as a whole")
    state: State | MemberState
    desired: int | None = Field(default=None, description="Workloads: replicas placed there")
    ready: int | None = Field(default=None, description="Workloads: replicas Ready there")
    message: str = ""

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def settled(self) -> bool:
        return self.state in SETTLED

    def order(self) -> tuple[str, int, str, bool, str]:
        """Namespace, workloads before objects, name, the whole object before its members."""
        rank = 0 if self.kind == WORKLOAD else 1
        return (self.namespace, rank, self.name, self.member is not None, self.member or "")


def workload_rows(fd: FederatedDeployment) -> list[StatusRow]:
    """A workload's rows: per member as its status records them, and the workload as a whole
    when it is pending, unplaced, invalid or being deleted."""

    def row(member: str | None, state: State, message: str = "", **counts: int) -> StatusRow:
        return StatusRow(
            namespace=fd.namespace,
            kind=WORKLOAD,
            name=fd.name,
            template_kind=fd.kind,
            member=member,
            state=state,
            message=message,
            **counts,
        )

    status = fd.status
    whole = _whole(
        lambda state, message: row(None, state, message),
        prefix=f"{WORKLOAD} {fd.key}: ",
        deleting=fd.deleting,
        orphan=fd.orphan,
        generation=fd.generation,
        observed=status.observed_generation,
        conditions=status.conditions,
        placed=bool(status.clusters),
    )
    if status.unplaced:
        fit = "fits" if status.unplaced == 1 else "fit"
        whole.append(
            row(None, State.UNPLACED, f"{_count(status.unplaced, 'replica')} {fit} on no member")
        )
    members = [
        row(c.name, _replica_state(c.desired, c.ready), desired=c.desired, ready=c.ready)
        for c in sorted(status.clusters, key=lambda c: c.name)
    ]
    if not whole and not members:
        whole.append(row(None, State.IDLE, "placed on no member"))
    return [*whole, *members]


def object_rows(fo: FederatedObject) -> list[StatusRow]:
    """An object's rows: per member as its status records them, and the object as a whole
    when it is pending, invalid or being deleted, or placed on no member."""

    def row(member: str | None, state: State | MemberState, message: str = "") -> StatusRow:
        return StatusRow(
            namespace=fo.namespace,
            kind=OBJECT,
            name=fo.name,
            template_kind=fo.kind,
            member=member,
            state=state,
            message=message,
        )

    status = fo.status
    whole = _whole(
        lambda state, message: row(None, state, message),
        prefix=f"{OBJECT} {fo.key}: ",
        deleting=fo.deleting,
        orphan=fo.orphan,
        generation=fo.generation,
        observed=status.observed_generation,
        conditions=status.conditions,
        placed=bool(status.clusters),
    )
    members = [
        row(c.name, c.state, c.message) for c in sorted(status.clusters, key=lambda c: c.name)
    ]
    if not whole and not members:
        why = "placed on no member: its placement matches none, or no placed workload uses it"
        whole.append(row(None, State.IDLE, why))
    return [*whole, *members]


def _replica_state(desired: int, ready: int) -> State:
    if desired == 0 and ready == 0:
        return State.IDLE
    return State.READY if ready == desired else State.PROGRESSING


def _whole(
    row: Callable[[State, str], StatusRow],
    *,
    prefix: str,
    deleting: bool,
    orphan: bool,
    generation: int,
    observed: int | None,
    conditions: Sequence[Condition],
    placed: bool,
) -> list[StatusRow]:
    """The rows about an object as a whole, from its metadata and status conditions (their
    messages without ``prefix``, the object's own name, which the row shows already)."""
    found = {c.type: c for c in conditions}
    if deleting:
        waiting = found.get("Deleting")
        if waiting is not None and waiting.status == "True":
            message = waiting.message or waiting.reason
        elif orphan:
            message = "the next run lets it go and leaves its copies on the members"
        else:
            message = "the next run removes it from its members"
        return [row(State.DELETING, message)]
    rows = []
    planned = found.get("Planned")
    if planned is not None and planned.status == "False":
        rows.append(row(State.INVALID, (planned.message or planned.reason).removeprefix(prefix)))
    if observed is None and not placed and not conditions:
        rows.append(row(State.PENDING, "not propagated yet: the next run places it"))
    elif observed is not None and observed < generation:
        rows.append(
            row(
                State.PENDING,
                f"changed since the last run (generation {generation}, status of {observed}): "
                "the next run propagates it",
            )
        )
    return rows


def invalid_row(kind: Kind, obj: dict[str, Any], reason: str) -> StatusRow:
    """The one row of an object that cannot be read: its names, as far as they go, and why."""
    meta, spec = _mapping(obj.get("metadata")), _mapping(obj.get("spec"))
    if kind == WORKLOAD:
        found = spec.get("kind", "Deployment")
    else:
        found = _mapping(spec.get("template")).get("kind")
    template_kind = found if isinstance(found, str) else ""
    return StatusRow(
        namespace=str(meta.get("namespace") or ""),
        kind=kind,
        name=str(meta.get("name") or ""),
        template_kind=template_kind,
        state=State.INVALID,
        message=reason,
    )


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def read_workload(obj: dict[str, Any]) -> FederatedDeployment:
    """``FederatedDeployment.from_object``, its failures as ``InvalidRequest`` in one line that
    names the field (and never carries the value, which could be anything)."""
    try:
        return FederatedDeployment.from_object(obj)
    except KeyError as exc:
        field = "metadata" if exc.args[0] == "metadata" else f"metadata.{exc.args[0]}"
        raise InvalidRequest(f"{field} is missing") from None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise InvalidRequest(f"{where}: {first['msg'].removeprefix('Value error, ')}") from None


def _reason(kind: Kind, obj: dict[str, Any], exc: InvalidRequest) -> str:
    meta = _mapping(obj.get("metadata"))
    prefix = f"{kind} {meta.get('namespace')}/{meta.get('name')}: "
    return str(exc).removeprefix(prefix)


def host_rows(
    workloads: Iterable[dict[str, Any]], objects: Iterable[dict[str, Any]]
) -> list[StatusRow]:
    """The rows of the host's FederatedDeployments and FederatedObjects as listed (plain
    dicts), sorted; one that cannot be read is an ``Invalid`` row saying why."""
    read_workloads: list[FederatedDeployment] = []
    read_objects: list[FederatedObject] = []
    invalid: list[StatusRow] = []
    for obj in workloads:
        try:
            read_workloads.append(read_workload(obj))
        except InvalidRequest as exc:
            invalid.append(invalid_row(WORKLOAD, obj, _reason(WORKLOAD, obj, exc)))
    for obj in objects:
        try:
            read_objects.append(FederatedObject.from_object(obj))
        except InvalidRequest as exc:
            invalid.append(invalid_row(OBJECT, obj, _reason(OBJECT, obj, exc)))
    return status_rows(read_workloads, read_objects, invalid=invalid)


class Unreadable(Protocol):
    """A FederatedObject a flow could not read (``fleetflow.objects.InvalidObject``)."""

    @property
    def name(self) -> str: ...
    @property
    def namespace(self) -> str: ...
    @property
    def error(self) -> str: ...


def status_rows(
    workloads: Iterable[FederatedDeployment],
    objects: Iterable[FederatedObject] = (),
    *,
    unreadable: Iterable[Unreadable] = (),
    updated: Iterable[object] = (),
    invalid: Iterable[StatusRow] = (),
) -> list[StatusRow]:
    """The rows of models already read (a flow's), sorted. ``unreadable``: FederatedObjects
    that could not be read, one ``Invalid`` row each. ``updated``: copies with the statuses a
    run has just written (anything else in it is ignored), in place of those read. ``invalid``:
    rows already made for what could not be read."""
    fresh = list(updated)
    newer_fd = {m.key: m for m in fresh if isinstance(m, FederatedDeployment)}
    newer_fo = {m.key: m for m in fresh if isinstance(m, FederatedObject)}
    rows = list(invalid)
    for fd in workloads:
        rows += workload_rows(newer_fd.get(fd.key, fd))
    for fo in objects:
        rows += object_rows(newer_fo.get(fo.key, fo))
    for bad in unreadable:
        raw = {"metadata": {"name": bad.name, "namespace": bad.namespace}}
        reason = bad.error.removeprefix(f"{OBJECT} {bad.namespace}/{bad.name}: ")
        rows.append(invalid_row(OBJECT, raw, reason))
    return sorted(rows, key=StatusRow.order)


def rows_json(rows: Iterable[StatusRow]) -> str:
    """The rows as a JSON list, one object per row (``member`` null: the object as a whole)."""
    return json.dumps([r.model_dump(mode="json") for r in rows], indent=2)


def summary(rows: Sequence[StatusRow], *, most: int = 8) -> str:
    """``2 workloads, 1 object; not settled: shop/web`` (or ``all settled``), naming at most
    ``most`` of those not settled."""
    workloads = len({r.key for r in rows if r.kind == WORKLOAD})
    objects = len({r.key for r in rows if r.kind == OBJECT})
    counts = f"{_count(workloads, 'workload')}, {_count(objects, 'object')}"
    unsettled = sorted({r.key for r in rows if not r.settled})
    if not unsettled:
        return f"{counts}; all settled"
    named = ", ".join(unsettled[:most])
    more = f" and {len(unsettled) - most} more" if len(unsettled) > most else ""
    return f"{counts}; {len(unsettled)} not settled: {named}{more}"


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'s' if n != 1 else ''}"


_WORKLOAD_COLUMNS = ("NAMESPACE", "NAME", "KIND", "MEMBER", "STATE", "READY")
_OBJECT_COLUMNS = ("NAMESPACE", "NAME", "KIND", "MEMBER", "STATE")


def _cells(row: StatusRow) -> tuple[str, ...]:
    member = row.member or "-"
    if row.kind == WORKLOAD:
        ready = f"{row.ready}/{row.desired}" if row.desired is not None else ""
        return (row.namespace, row.name, row.template_kind or "-", member, row.state.value, ready)
    return (row.namespace, row.name, row.template_kind or "-", member, row.state.value)


def _one_line(message: str) -> str:
    return " ".join(message.split())


_ROOM = 30
"""The narrowest message column worth having; with less room beside the row (long namespaces
or names), each message goes on its own lines below its row."""


def text_table(rows: Sequence[StatusRow], *, width: int = 100) -> str:
    """Fixed-width tables, workloads then objects, sorted, the summary last. A message longer
    than the room left on its line continues on the next lines, under itself; with too little
    room beside the rows, every message goes below its row, indented."""
    sections = [
        ("WORKLOADS (FederatedDeployment)", _WORKLOAD_COLUMNS, WORKLOAD),
        ("OBJECTS (FederatedObject)", _OBJECT_COLUMNS, OBJECT),
    ]
    out: list[str] = []
    for title, header, kind in sections:
        section = sorted((r for r in rows if r.kind == kind), key=StatusRow.order)
        if not section:
            continue
        cells = [header, *(_cells(r) for r in section)]
        widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
        indent = sum(widths) + 2 * len(widths)
        beside = width - indent >= _ROOM
        if out:
            out.append("")
        out += [title, (_line(header, widths, kind) + ("MESSAGE" if beside else "")).rstrip()]
        for r, c in zip(section, cells[1:], strict=True):
            message = _one_line(r.message)
            if beside:
                lines = textwrap.wrap(message, width - indent, break_on_hyphens=False) or [""]
                out.append((_line(c, widths, kind) + lines[0]).rstrip())
                out += [" " * indent + more for more in lines[1:]]
            else:
                out.append(_line(c, widths, kind).rstrip())
                out += textwrap.wrap(
                    message,
                    width,
                    break_on_hyphens=False,
                    initial_indent="    ",
                    subsequent_indent="    ",
                )
    out += textwrap.wrap(summary(rows), width, break_on_hyphens=False, subsequent_indent="  ")
    return "\n".join(out)


def _line(cells: Sequence[str], widths: Sequence[int], kind: str) -> str:
    right = {5} if kind == WORKLOAD else set()  # the ready counts line up on the right
    return "".join(
        (f"{c:>{w}}" if i in right else f"{c:<{w}}") + "  "
        for i, (c, w) in enumerate(zip(cells, widths, strict=True))
    )


def _md(text: str) -> str:
    return _one_line(text).replace("\\", "\\\\").replace("|", "\\|").replace("<", "&lt;")


def markdown(rows: Sequence[StatusRow], *, title: str = "Federation status") -> str:
    """The rows as markdown (for an artifact): the summary, then a table of workloads and one
    of objects."""
    out = [f"## {title}", "", summary(rows)]
    sections = [
        ("Workloads (FederatedDeployment)", _WORKLOAD_COLUMNS, WORKLOAD),
        ("Objects (FederatedObject)", _OBJECT_COLUMNS, OBJECT),
    ]
    for heading, header, kind in sections:
        section = sorted((r for r in rows if r.kind == kind), key=StatusRow.order)
        if not section:
            continue
        columns = [*(h.lower() for h in header), "message"]
        out += ["", f"### {heading}", "", "| " + " | ".join(columns) + " |"]
        out.append("|" + " --- |" * len(columns))
        for r in section:
            cells = [*_cells(r), r.message]
            out.append("| " + " | ".join(_md(c) for c in cells) + " |")
    return "\n".join(out) + "\n"
