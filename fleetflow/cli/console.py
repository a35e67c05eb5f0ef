"""What the command prints: its own progress lines, and Prefect's log lines without tracebacks.

Prefect logs a failed run's traceback (``exc_info``) on the run's loggers, whose API handler
sends it, with every INFO line, to the run's log in the Prefect API; the record then propagates
to the root logger's console handler. Filtering that handler keeps the traceback off the terminal
and nothing else changes: the API handler has already sent it. Lowering the console's level (not
``PREFECT_LOGGING_LEVEL``, which is the loggers' level and would starve the API handler too, and
would leak into every process started from here) is how a command quiets Prefect's lines.

A flow command is quiet by default: the terminal shows the lines fleetflow's own code logs (a
health change, a phase done, a wait) and Prefect's warnings and errors, not Prefect's engine
lines (a task run finished, a flow run began) but for its retries. ``--verbose`` shows them
all; the run's log in the Prefect API always has them all.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any, TextIO

_OURS = str(Path(__file__).resolve().parents[1])


def say(message: str) -> None:
    print(message, flush=True)


def error(message: str) -> None:
    """``error: message`` on a line of its own, after whatever was written before it."""
    fresh = "\n" if getattr(sys.stderr, "mid_line", False) else ""
    print(f"{fresh}error: {message}", file=sys.stderr, flush=True)


class LineTracking:
    """stderr, knowing whether what was last written ended its line. Prefect's log worker
    writes why it could not send a run's logs with no newline after it (``All connection
    attempts failed``, from ``prefect/logging/handlers.py``): the command's error line that
    follows, when the Prefect API went away, would be glued to it."""

    def __init__(self, stream: TextIO) -> None:
        self.stream, self.mid_line = stream, False

    def write(self, text: str) -> int:
        if text:
            self.mid_line = not text.endswith("\n")
        return self.stream.write(text)

    def __getattr__(self, name: str) -> Any:  # flush, isatty, fileno...: the stream's own
        return getattr(self.stream, name)


def track_lines() -> None:
    """Make stderr a :class:`LineTracking` one (once)."""
    if not isinstance(sys.stderr, LineTracking):
        sys.stderr = LineTracking(sys.stderr)


def _without_traceback(record: logging.LogRecord) -> bool:
    return record.exc_info is None


def _ours_or_warning(record: logging.LogRecord) -> bool:
    """Our line, a warning, or Prefect's note of a retry (INFO, yet it explains a pause)."""
    return (
        record.levelno >= logging.WARNING
        or record.pathname.startswith(_OURS)
        or str(record.msg).startswith("Task run failed with")
    )


SHOWN: set[str] = set()
"""fleetflow's own lines this terminal has shown: the report does not print them twice."""


def _remember(record: logging.LogRecord) -> bool:
    if record.pathname.startswith(_OURS):
        SHOWN.add(record.getMessage())
    return True


def _not_a_drain_note(record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith("Still processing items")


def quiet_exit_notes() -> None:
    """Keep Prefect's note that it is still sending a command's events or logs at exit off the
    terminal: on a busy machine it followed a one-line refusal ("EventsWorker - Still processing
    items: 3 items remaining..."), and nothing in it is for the user to act on."""
    for name in ("EventsWorker", "APILogWorker"):  # Prefect's own logger names for them
        found = logging.getLogger(name)
        if _not_a_drain_note not in found.filters:
            found.addFilter(_not_a_drain_note)


def prefect_console(level: int = logging.INFO, *, verbose: bool = True) -> None:
    """Show log lines from ``level`` up, and never a traceback, on this terminal; unless
    ``verbose``, only fleetflow's own lines and Prefect's warnings.

    Call it once Prefect is imported (its logging is configured on import); calling it again
    changes the level and the choice."""
    from prefect.logging.handlers import PrefectConsoleHandler

    for handler in logging.getLogger().handlers:
        if isinstance(handler, PrefectConsoleHandler):
            handler.setLevel(level)
            if _without_traceback not in handler.filters:
                handler.addFilter(_without_traceback)
            handler.removeFilter(_remember)  # last: it sees only the lines that are shown
            if verbose:
                handler.removeFilter(_ours_or_warning)
            elif _ours_or_warning not in handler.filters:
                handler.addFilter(_ours_or_warning)
            handler.addFilter(_remember)
