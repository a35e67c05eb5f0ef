"""A flow run from the command line: against which Prefect API, with the blocks it names checked
before the run exists, and its report (or one error line naming the run) printed at the end."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TypeVar
from uuid import UUID

import httpx
from prefect import Flow
from prefect.client.orchestration import get_client
from prefect.settings import (
    PREFECT_API_URL,
    PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
    PREFECT_HOME,
    temporary_settings,
)
from prefect.utilities.urls import url_for

from fleetflow import failpoints
from fleetflow import stack as local_stack
from fleetflow.blocks.loading import LOADERS
from fleetflow.cli.console import SHOWN, error, prefect_console, say
from fleetflow.cli.failpoints import checked
from fleetflow.errors import FleetflowError, StackError, prefect_overloaded
from fleetflow.models import Report, Request, block_refs
from fleetflow.settings import settings

R = TypeVar("R", bound=Request)


@contextmanager
def prefect_api(stack: local_stack.Stack | None = None) -> Iterator[str]:
    """Talk to ``stack``'s API; without one, to PREFECT_API_URL, else to the server that
    ``fleetflow up`` started. Yields the API's URL."""
    if stack is None:
        if configured := PREFECT_API_URL.value():
            yield configured
            return
        stack = local_stack.Stack()
        if not local_stack.healthy(stack):
            raise StackError(
                "no Prefect API to run the flow against: start one with `fleetflow up`, "
                "or set PREFECT_API_URL"
            )
    with temporary_settings({PREFECT_API_URL: stack.api_url, PREFECT_HOME: stack.prefect_home}):
        yield stack.api_url


def check_blocks(request: Request) -> None:
    """Load every block the request names, so that a mistyped name stops here, in one line."""
    for field, kind in block_refs(type(request)).items():
        name = getattr(request, field)
        if name is None:
            continue
        try:
            LOADERS[kind](name)
        except httpx.HTTPError as exc:
            if busy := prefect_overloaded(exc):
                raise busy from None
            raise StackError(
                f"the Prefect API at {PREFECT_API_URL.value()} does not answer ({exc}): start "
                "it with `fleetflow up`, or set PREFECT_API_URL"
            ) from None


def run_flow(flow: Flow[[R], Report], request: R, *, verbose: bool = False) -> int:
    """Run ``flow`` in this process (its run, logs and artifacts land in Prefect as usual) and
    print its report; 1 when the run failed, after one line naming it. ``verbose``: Prefect's
    own log lines on the terminal too."""
    if os.environ.get(failpoints.ENV):  # a typo there is said before a run exists
        checked(settings().failpoints)
    with prefect_api(), _beating():
        check_blocks(request)
        prefect_console(verbose=verbose)
        state = flow(request, return_state=True)
        if state.is_completed():
            report(state.result())
            return 0
        outcome = state.result(raise_on_failure=False)
        if isinstance(outcome, BaseException) and (busy := prefect_overloaded(outcome)):
            message = str(busy)
        elif isinstance(outcome, FleetflowError):
            message = str(outcome)
        elif isinstance(outcome, BaseException):
            message = f"{type(outcome).__name__}: {outcome}"
        else:
            message = state.message or state.type.value
        error(f"{message} ({_where(state.state_details.flow_run_id)})")
        return 1


def _beating() -> AbstractContextManager[object]:
    """The run beats as the worker's do: killed outright, the stack's automation marks it
    Crashed within three beats instead of leaving it Running for ever (the user's own
    PREFECT_FLOWS_HEARTBEAT_FREQUENCY, when set, wins)."""
    if os.environ.get(local_stack.HEARTBEAT_SETTING):
        return nullcontext()
    beat = settings().heartbeat_seconds
    return temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: beat})


def _where(flow_run_id: UUID | None) -> str:
    """The flow run by name and, when the API has a UI, its page, where the traceback is."""
    if flow_run_id is None:
        return "no flow run"
    with get_client(sync_client=True) as client:
        flow_run = client.read_flow_run(flow_run_id)
    url = url_for(flow_run)
    return f"flow run {flow_run.name!r}" + (f"; its log has the details: {url}" if url else "")


def report(result: Report) -> None:
    say("")
    for action in result.actions:
        line = ("would " if result.dry_run and action.verb != "unchanged" else "") + action.line()
        if line not in SHOWN:  # the run logged it as it wrote it
            say(line)
    for note in result.notes:
        say(f"note: {note}")
    writes = len(result.writes())
    say(
        f"{result.procedure}: {writes} change{'s' if writes != 1 else ''}"
        + (" planned (dry run: nothing written)" if result.dry_run else "")
    )
