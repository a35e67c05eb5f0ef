"""The federation's status where people look in the UI: the same tables as ``fleetflow status``,
as a markdown artifact of the run that recorded them."""

from __future__ import annotations

from collections.abc import Sequence

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from fleetflow.autoscaling import AutoscaleRow
from fleetflow.status import StatusRow, markdown, summary

KEY = "federation-status"
"""One key for every run: the UI's Artifacts page shows the latest, and its history."""


def publish_status(rows: Sequence[StatusRow]) -> None:
    """Publish ``rows`` (``fleetflow.status.status_rows``) as the ``federation-status``
    markdown artifact: every federated workload and object, with its state on each member."""
    create_markdown_artifact(markdown=markdown(rows), key=KEY, description=summary(rows))


AUTOSCALE_KEY = "autoscale-status"


def publish_autoscale(rows: Sequence[AutoscaleRow]) -> None:
    """The same table as ``fleetflow autoscale status``, when any workload is autoscaled."""
    if not rows:
        return
    table = [r.model_dump(mode="json") for r in rows]
    workloads = sum(1 for r in rows if r.member is None)
    create_table_artifact(
        table=table,
        key=AUTOSCALE_KEY,
        description=f"{workloads} autoscaled workloads: budget per member, last move",
    )
