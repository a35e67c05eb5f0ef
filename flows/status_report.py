"""The federation's status where people look in the UI: the same tables as ``fleetflow status``,
as a markdown artifact of the run that recorded them."""

from __future__ import annotations

from collections.abc import Sequence

from prefect.artifacts import create_markdown_artifact

from fleetflow.status import StatusRow, markdown, summary

KEY = "federation-status"
"""One key for every run: the UI's Artifacts page shows the latest, and its history."""


def publish_status(rows: Sequence[StatusRow]) -> None:
    """Publish ``rows`` (``fleetflow.status.status_rows``) as the ``federation-status``
    markdown artifact: every federated workload and object, with its state on each member."""
    create_markdown_artifact(markdown=markdown(rows), key=KEY, description=summary(rows))
