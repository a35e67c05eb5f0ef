"""The Prefect UI in a real browser: Debian's Chromium driven by Playwright for Python, headless.

Playwright's own browser builds are never downloaded (no ``playwright install``): the machine
has no internet, and the distribution's Chromium is the one browser used. One journey, shared by
the browser test and ``bench/bench_ui.py``: open the UI, find a deployment, start a custom run
through its parameter form, and follow the run to its logs and artifacts.

Selectors are roles and visible text, so a restyled UI keeps working; every wait is one of
Playwright's auto-waiting assertions with a bounded timeout.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from fleetflow.errors import StackError
from fleetflow.polling import poll_until
from fleetflow.testbed import packages

if TYPE_CHECKING:
    from playwright.sync_api import BrowserContext, Locator, Page
    from prefect.client.orchestration import SyncPrefectClient
    from prefect.client.schemas.objects import Log

CHROMIUM = Path(packages.package("chromium").proof)
# The machine has no internet: without these Chromium keeps calling Google's services (sync,
# component updates, QUIC probes) and logs every refused connection. --no-sandbox: run as root
# (CI, containers) Chromium refuses to start with its sandbox.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WORKER_LOGGER = "prefect.flow_runs.worker"  # the worker's lines about a run; the rest are the run's
STEP_MS = 30_000  # one page or one control of the UI
RUN_MS = 180_000  # a run, from the click to its final state

# The UI's page on its own: Prefect's UI app, static files and /ui-settings, which tells the
# browser where the API is. It needs no database.
_UI_APP = """
import sys
import uvicorn
from prefect.server.api.server import create_ui_app
uvicorn.run(create_ui_app(ephemeral=False), host="127.0.0.1", port=int(sys.argv[1]),
            log_level="warning")
"""


def missing() -> str | None:
    """Why the browser cannot run here, or None."""
    chromium = packages.package("chromium")
    if not packages.installed(chromium):
        return packages.missing_line(chromium)
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed: `pip install -c constraints.txt -e .[test]`"
    return None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def ui_for(api_url: str, log: Path) -> Iterator[str]:
    """Serve Prefect's UI on a free port, talking to the API at ``api_url``; yield its address.

    For a server started without its UI: the test harness's server serves the API only. The
    browser calls the API directly at ``api_url`` (the API allows any origin)."""
    port = _free_port()
    env = dict(os.environ, PREFECT_UI_API_URL=api_url, PREFECT_SERVER_ANALYTICS_ENABLED="false")
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", _UI_APP, str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        if proc.poll() is not None:
            raise StackError(f"the Prefect UI exited with {proc.returncode}; see {log}")
        try:
            return httpx.get(f"{url}/ui-settings", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        poll_until(answers, bool, timeout=60, waiting_for=f"the Prefect UI at {url}", hint=str(log))
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextlib.contextmanager
def chromium(profile: Path, blocked: list[str]) -> Iterator[BrowserContext]:
    """A headless Chromium with a fresh profile in ``profile``. Requests that leave the machine
    (the UI asks a product-analytics service for its configuration) are refused at once and
    listed in ``blocked``: no step may wait on the internet."""
    from playwright.sync_api import Route, expect, sync_playwright

    def refuse(route: Route) -> None:
        blocked.append(route.request.url)
        route.abort()

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000},
        )
        try:
            context.set_default_timeout(STEP_MS)
            # Assertions wait as long as actions: Playwright's own 5 s was too short for the
            # deployments table to show each row's flow under a loaded suite (seen).
            expect.set_options(timeout=STEP_MS)
            context.route(re.compile(r"^(?!https?://127\.0\.0\.1[:/])"), refuse)
            yield context
        finally:
            context.close()


@dataclass
class Screens:
    """One full-page screenshot per step, numbered in order."""

    directory: Path
    taken: list[Path] = field(default_factory=list)

    def take(self, page: Page, step: str) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{len(self.taken) + 1:02d}-{step}.png"
        page.screenshot(path=path, full_page=True)
        self.taken.append(path)

    def copy_to(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        for path in self.taken:
            shutil.copy2(path, directory / path.name)


def form_field(page: Page, label: str) -> Locator:
    """The control area of a parameter form's field, found by its label (the UI adds
    " (Optional)" to a field that has a default). The labels are not tied to their inputs, so
    the field is the label's nearest ancestor that holds a fieldset."""
    name = re.compile(rf"^{re.escape(label)}( \(Optional\))?$")
    group = page.locator("label", has_text=name).locator("xpath=ancestor::*[.//fieldset][1]")
    return group.locator("fieldset").first


def choose_block(page: Page, control: Locator, name: str) -> None:
    """Fill a field naming a block by whatever the form renders for it: a block picker (choose
    the saved block by name), a select, or a text box (type the name)."""
    from playwright.sync_api import expect

    picker = control.locator("[aria-haspopup=listbox], [role=combobox]")
    select = control.locator("select")
    text = control.get_by_role("textbox")
    expect(picker.or_(select).or_(text).first).to_be_visible()
    if picker.count():
        picker.first.click()
        popup = page.get_by_role("dialog").filter(has=page.get_by_role("listbox"))
        expect(popup).to_be_visible()
        # The picker lists the first 50 saved blocks; its search asks the API for the name.
        search = popup.get_by_role("combobox")
        if search.count():
            search.fill(name)
        popup.get_by_role("option", name=name, exact=True).click()
        expect(picker.first).to_contain_text(name)
    elif select.count():
        select.select_option(label=name)
    else:
        text.fill(name)


def fill_text(control: Locator, value: str) -> None:
    """Type into an optional text field, switching it from None to str first when it offers
    that choice."""
    as_text = control.get_by_role("tab", name="str", exact=True)
    if as_text.count():
        as_text.click()
    control.get_by_role("textbox").fill(value)


@dataclass(frozen=True)
class CustomRun:
    """A custom run of a deployment, its form filled with these values."""

    flow: str  # the flow's name, as the deployments list shows it under the deployment's
    deployment: str
    block_fields: dict[str, str]  # field label -> block name
    text_fields: dict[str, str]
    number_fields: dict[str, int]


@dataclass(frozen=True)
class Journey:
    """What one journey through the UI found, and how long it took."""

    flow_run_id: str
    clicked_at: datetime  # the click on the form's Submit, which creates the run
    to_click: float  # seconds from opening the UI to that click: finding and filling the form
    to_final_state_shown: float  # seconds from that click until the run page shows it final
    seconds: float  # the whole journey, from opening the UI to the plan's rows


@dataclass(frozen=True)
class Outcome:
    """What the run page must show once the run is over."""

    log_line: str  # in the Logs tab
    artifacts: list[str]  # keys, in the Artifacts tab
    table: str  # the key of a table artifact to open
    rows: list[tuple[str, ...]]  # rows of that table, each by some of its cells' exact texts


def start_and_follow(
    page: Page, ui_url: str, api_url: str, run: CustomRun, outcome: Outcome, screens: Screens
) -> Journey:
    """Open the UI, find the deployment, start a custom run from its form and follow it until
    the run page shows it Completed with ``outcome``. ``api_url`` is the API the UI talks to.
    Raises AssertionError (Playwright's, saying what it waited for) at the first step that
    does not happen in time."""
    from playwright.sync_api import expect

    began = time.monotonic()
    page.goto(ui_url)
    nav = page.get_by_role("link", name="Deployments", exact=True)
    expect(nav).to_be_visible()
    screens.take(page, "dashboard")

    nav.click()
    row = page.get_by_role("row").filter(has_text=run.flow)
    deployment = row.get_by_role("link", name=run.deployment, exact=True)
    expect(deployment).to_be_visible()
    screens.take(page, "deployments")

    deployment.click()
    run_button = page.get_by_role("button", name="Run", exact=True)
    expect(run_button).to_be_visible()
    screens.take(page, "deployment")

    run_button.click()
    page.get_by_role("menuitem", name="Custom run").click()
    expect(page.get_by_role("heading", name="Parameters")).to_be_visible()
    for label, block in run.block_fields.items():
        choose_block(page, form_field(page, label), block)
    for label, text in run.text_fields.items():
        fill_text(form_field(page, label), text)
    for label, number in run.number_fields.items():
        form_field(page, label).get_by_role("spinbutton").fill(str(number))
    screens.take(page, "custom-run-form")

    submit = page.get_by_role("button", name="Submit", exact=True)
    clicked_at = datetime.now(UTC)
    clicked = time.monotonic()
    submitted(page, submit)
    # The UI confirms with a toast linking to the new run.
    page.get_by_role("link", name="View run").click()
    page.wait_for_url(re.compile(r"/runs/flow-run/[0-9a-f-]{36}"))
    flow_run_id = re.findall(r"/runs/flow-run/([0-9a-f-]{36})", page.url)[0]
    screens.take(page, "run-started")

    final = page.get_by_text(re.compile(r"^(Completed|Failed|Crashed|Cancelled)$")).first
    expect(final).to_be_visible(timeout=RUN_MS)
    to_final = time.monotonic() - clicked
    expect(final).to_have_text("Completed")
    screens.take(page, "run-completed")

    # Prefect 3.9's run page refetches logs only while it sees the run Running (it polls the
    # run every 5 s), so a run of a few seconds keeps "This run did not produce any logs." until
    # the page is reloaded, as a person would. The run's last lines reach the API shortly after
    # its final state: wait for them first, so that one reload shows them.
    wait_for_log_line(api_url, flow_run_id, outcome.log_line)
    page.reload()
    page.get_by_role("tab", name="Logs", exact=True).click()
    # Newest first: the run's last lines are at the top of the (virtualised) list.
    page.get_by_role("combobox", name="log sort order").click()
    page.get_by_role("option", name="Newest to oldest").click()
    expect(page.get_by_role("log").get_by_text(outcome.log_line).first).to_be_visible()
    screens.take(page, "logs")

    page.get_by_role("tab", name="Artifacts", exact=True).click()
    for key in outcome.artifacts:
        expect(page.get_by_text(key, exact=True)).to_be_visible()
    screens.take(page, "artifacts")

    page.get_by_text(outcome.table, exact=True).click()
    for cells in outcome.rows:
        found = page.get_by_role("row")
        for cell in cells:
            found = found.filter(has=page.get_by_role("cell", name=cell, exact=True))
        expect(found).to_have_count(1)
    screens.take(page, outcome.table)

    return Journey(
        flow_run_id=flow_run_id,
        clicked_at=clicked_at,
        to_click=clicked - began,
        to_final_state_shown=to_final,
        seconds=time.monotonic() - began,
    )


def submitted(page: Page, submit: Locator, attempts: int = 3) -> None:
    """Click Submit until the UI sends the run to the API. A click that lands while the form
    is still re-rendering (its block picker loads asynchronously) is sometimes lost, and the
    form just stays; clicking again then is what a person does, and cannot start a second run
    because none was sent."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for attempt in range(attempts):
        try:
            with page.expect_request(
                lambda r: r.method == "POST" and r.url.endswith("/create_flow_run"),
                timeout=10_000,
            ):
                submit.click()
            return
        except PlaywrightTimeout:
            if attempt == attempts - 1:
                raise


def wait_for_log_line(api_url: str, flow_run_id: str, line: str) -> None:
    """Wait until the API holds a log line of the flow run containing ``line``."""

    def messages() -> list[str]:
        found = httpx.post(
            f"{api_url}/logs/filter",
            json={
                "logs": {"flow_run_id": {"any_": [flow_run_id]}},
                "sort": "TIMESTAMP_DESC",
                "limit": 50,
            },
            timeout=10,
        )
        found.raise_for_status()
        return [log["message"] for log in found.json()]

    poll_until(
        messages,
        lambda lines: any(line in message for message in lines),
        timeout=30,
        interval=0.5,
        waiting_for=f"the line {line!r} of flow run {flow_run_id} in the API",
        describe=lambda lines: f"{len(lines)} lines, the last: {lines[:1]}",
    )


def run_logs(client: SyncPrefectClient, flow_run_id: str) -> list[Log]:
    """The flow run's log lines, oldest first."""
    from uuid import UUID

    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import LogSort

    return client.read_logs(
        LogFilter(flow_run_id=LogFilterFlowRunId(any_=[UUID(flow_run_id)])),
        sort=LogSort.TIMESTAMP_ASC,
    )


def timings(journey: Journey, logs: list[Log]) -> dict[str, float]:
    """The journey's figures in seconds; the first lines by their own timestamps (the worker and
    the run stamp a line when they write it, on this machine's clock)."""
    worker = next(log for log in logs if log.name == WORKER_LOGGER)
    flow = next(log for log in logs if log.name != WORKER_LOGGER)
    return {
        "browser journey (open the UI ... the plan's rows)": journey.seconds,
        "open the UI -> Submit click (find the deployment, fill its form)": journey.to_click,
        "Submit click -> the worker's first line about the run": (
            worker.timestamp - journey.clicked_at
        ).total_seconds(),
        "Submit click -> the flow run's first log line": (
            flow.timestamp - journey.clicked_at
        ).total_seconds(),
        "Submit click -> the run page shows Completed": journey.to_final_state_shown,
    }


def describe(figures: dict[str, float]) -> str:
    return "".join(f"{name:<66} {seconds:6.2f} s\n" for name, seconds in figures.items())
