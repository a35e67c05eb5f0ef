"""What the command prints: its own progress lines, and Prefect's log lines without tracebacks.

Prefect logs a failed run's traceback (``exc_info``) on the run's loggers, whose API handler
sends it, with every INFO line, to the run's log in the Prefect API; the record then propagates
to the root logger's console handler. Filtering that handler keeps the traceback off the terminal
and nothing else changes: the API handler has already sent it. Lowering the console's level (not
``PREFECT_LOGGING_LEVEL``, which is the loggers' level and would starve the API handler too, and
would leak into every process started from here) is how a command quiets Prefect's lines.
"""

from __future__ import annotations

import logging
import sys


def say(message: str) -> None:
    print(message, flush=True)


def error(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)


def _without_traceback(record: logging.LogRecord) -> bool:
    return record.exc_info is None


def prefect_console(level: int = logging.INFO) -> None:
    """Show Prefect's log lines from ``level`` up, and never a traceback, on this terminal.

    Call it once Prefect is imported (its logging is configured on import); calling it again
    only changes the level."""
    from prefect.logging.handlers import PrefectConsoleHandler

    for handler in logging.getLogger().handlers:
        if isinstance(handler, PrefectConsoleHandler):
            handler.setLevel(level)
            if _without_traceback not in handler.filters:
                handler.addFilter(_without_traceback)
