"""Which Prefect API and which federation a read command uses, decided without Prefect. Pure."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetflow.blockstore import configured_api_url, default_federation
from fleetflow.errors import InvalidRequest


def test_the_configured_federation_wins_then_the_only_one_saved() -> None:
    assert default_federation("prod", ["a", "b"]) == ("prod", "FLEETFLOW_FEDERATION")
    assert default_federation(None, ["demo"]) == ("demo", "the only Federation block")


def test_none_or_several_federations_ask_for_one() -> None:
    with pytest.raises(InvalidRequest, match="no Federation block is saved: bootstrap"):
        default_federation(None, [])
    with pytest.raises(InvalidRequest, match=r"2 Federation blocks are saved \(a, b\): choose"):
        default_federation(None, ["a", "b"])


def test_the_api_url_comes_from_the_environment_then_the_active_profile(tmp_path: Path) -> None:
    profiles = tmp_path / "profiles.toml"
    profiles.write_text(
        'active = "local"\n'
        '[profiles.local]\nPREFECT_API_URL = "http://127.0.0.1:4200/api"\n'
        '[profiles.other]\nPREFECT_API_URL = "http://other:4200/api"\n'
    )
    home = {"PREFECT_HOME": str(tmp_path)}
    assert configured_api_url(home) == "http://127.0.0.1:4200/api"
    assert configured_api_url({**home, "PREFECT_PROFILE": "other"}) == "http://other:4200/api"
    given = {**home, "PREFECT_API_URL": "http://env:1/api"}
    assert configured_api_url(given) == "http://env:1/api"
    assert configured_api_url({"PREFECT_HOME": str(tmp_path / "none")}) is None
