"""Durable progress of a multi-phase procedure: a ``FederationOperation`` in the host. Pure.

Prefect's transactions live in memory only, so a failover records each finished phase on its
operation record before the next begins. A rerun after a crash reads the record and skips every
phase already done; an interrupted run leaves the record as its audit trail. Records are named
after what they act on (``failover-us-east``), so two requests for the same region meet the same
record: the second finds it done and changes nothing.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, Field

from fleetflow.controlplane import (
    API_VERSION,
    LABEL_FEDERATION,
    LABEL_MANAGED,
    MANAGED_BY,
    Manifest,
)
from fleetflow.wire import WireModel


class Phase(StrEnum):
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    REVERTED = "Reverted"  # failed back: the region holds replicas again
    PAUSED = "Paused"  # stopped between phases on purpose (a staged migration); a rerun resumes


class Step(WireModel):
    name: str
    at: str
    message: str = ""


class OperationStatus(WireModel):
    phase: Phase | None = None
    started_at: str | None = Field(default=None, alias="startedAt")
    finished_at: str | None = Field(default=None, alias="finishedAt")
    steps: list[Step] = Field(default_factory=list)
    result: dict[str, Any] = Field(default_factory=dict)

    def wire(self) -> dict[str, Any]:
        # An empty map is left out: applied as {} over a record's earlier result (a new
        # migration of a workload moved before), the apiserver stores null, which the schema
        # refuses; left out, this field manager's earlier keys are simply removed.
        found = super().wire()
        if not found.get("result"):
            found.pop("result", None)
        return found


class Operation(BaseModel):
    """A procedure's record: what it acts on (spec) and how far it got (status)."""

    name: str
    namespace: str
    procedure: str
    federation: str
    parameters: dict[str, Any] = Field(default_factory=dict)
    flow_run_id: str | None = None
    status: OperationStatus = Field(default_factory=OperationStatus)
    resource_version: str | None = None
    """The record's version as last read or written: every write is conditional on it
    (compare-and-set), so a run never overwrites what another wrote meanwhile."""

    @classmethod
    def from_object(cls, obj: Manifest) -> Operation:
        meta, spec = obj["metadata"], obj.get("spec") or {}
        return cls(
            name=meta["name"],
            namespace=meta["namespace"],
            procedure=spec.get("procedure", ""),
            federation=spec.get("federation", ""),
            parameters=spec.get("parameters") or {},
            flow_run_id=spec.get("flowRunID"),
            status=OperationStatus.model_validate(obj.get("status") or {}),
            resource_version=meta.get("resourceVersion"),
        )

    def manifest(self) -> Manifest:
        spec: dict[str, Any] = {
            "procedure": self.procedure,
            "federation": self.federation,
            "parameters": self.parameters,
        }
        if self.flow_run_id:
            spec["flowRunID"] = self.flow_run_id
        return {
            "apiVersion": API_VERSION,
            "kind": "FederationOperation",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "labels": {LABEL_MANAGED: MANAGED_BY, LABEL_FEDERATION: self.federation},
                **self._version(),
            },
            "spec": spec,
        }

    def status_patch(self) -> Manifest:
        return {
            "apiVersion": API_VERSION,
            "kind": "FederationOperation",
            "metadata": {"name": self.name, "namespace": self.namespace, **self._version()},
            "status": self.status.wire(),
        }

    def _version(self) -> dict[str, str]:
        """The precondition of a write: the version this run last saw (none for a new one)."""
        return {"resourceVersion": self.resource_version} if self.resource_version else {}

    def done(self, step: str) -> bool:
        return any(s.name == step for s in self.status.steps)

    @property
    def finished(self) -> bool:
        return self.status.phase is Phase.SUCCEEDED


STAMP = "%Y-%m-%dT%H:%M:%S.%fZ"


def stamp(now: datetime) -> str:
    return now.strftime(STAMP)


def parse_stamp(text: str | None) -> datetime | None:
    return datetime.strptime(text, STAMP).replace(tzinfo=UTC) if text else None


def started(op: Operation, now: datetime, flow_run_id: str | None) -> Operation:
    """The record as a (re)started run takes it over: Running, its first start and finished
    steps kept, so the run resumes. A reverted operation (failed back) starts afresh."""
    if op.status.phase is Phase.REVERTED:
        op = op.model_copy(update={"status": OperationStatus()})
    status = op.status.model_copy(
        update={
            "phase": Phase.RUNNING,
            "started_at": op.status.started_at or stamp(now),
            "finished_at": None,
        }
    )
    return op.model_copy(update={"status": status, "flow_run_id": flow_run_id or op.flow_run_id})


def step_done(
    op: Operation, step: str, now: datetime, message: str = "", **result: Any
) -> Operation:
    """The record with ``step`` finished (once: a step already recorded keeps its time)."""
    if op.done(step):
        return op
    status = op.status.model_copy(
        update={
            "steps": [*op.status.steps, Step(name=step, at=stamp(now), message=message)],
            "result": {**op.status.result, **result},
        }
    )
    return op.model_copy(update={"status": status})


def rolled_back(op: Operation, keep: tuple[str, ...]) -> Operation:
    """The record once a procedure undid its later phases: only the phases in ``keep`` stay
    done, so a rerun does the others again."""
    steps = [s for s in op.status.steps if s.name in keep]
    return op.model_copy(update={"status": op.status.model_copy(update={"steps": steps})})


def finished(op: Operation, phase: Phase, now: datetime, message: str = "") -> Operation:
    steps = op.status.steps
    if message:
        steps = [*steps, Step(name=phase.value, at=stamp(now), message=message)]
    status = op.status.model_copy(
        update={"phase": phase, "finished_at": stamp(now), "steps": steps}
    )
    return op.model_copy(update={"status": status})
