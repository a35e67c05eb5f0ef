"""Where fleetflow keeps local state: ``$FLEETFLOW_HOME``, by default ``~/.fleetflow``."""

from __future__ import annotations

import os
from pathlib import Path


def home() -> Path:
    return Path(os.environ.get("FLEETFLOW_HOME") or Path.home() / ".fleetflow").expanduser()
