"""Only the fleetflow name is installed: a worker that also runs somebody's tasks.py is safe."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def _import(module: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", f"import {module}; print({module}.__file__)"],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONNOUSERSITE": "1"},
        check=False,
    )


def test_flows_tasks_and_blocks_are_importable_only_under_fleetflow(tmp_path: Path) -> None:
    for top in ("flows", "tasks", "blocks"):
        found = _import(top, tmp_path)
        assert found.returncode != 0 and "ModuleNotFoundError" in found.stderr, top
        ours = _import(f"fleetflow.{top}", tmp_path)
        assert ours.returncode == 0, ours.stderr
    flow = _import("fleetflow.flows.rebalance", tmp_path)
    assert flow.returncode == 0, flow.stderr
    assert flow.stdout.strip().endswith("flows/rebalance.py")
