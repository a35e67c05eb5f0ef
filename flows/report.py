"""Publish a procedure's report where people look: the flow run's artifacts and log."""

from __future__ import annotations

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact

from fleetflow.models import Report


def publish(report: Report, key: str) -> Report:
    """A markdown artifact of every action, and one log line per write."""
    logger = get_run_logger()
    for action in report.writes():
        logger.info(("would " if report.dry_run else "") + action.line())
    if not report.writes():
        logger.info("nothing to change")
    create_markdown_artifact(markdown=report.markdown(), key=key, description=report.procedure)
    return report
