"""The one settings object: environment, defaults, the README's table, overrides per federation."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetflow.blocks import Federation
from fleetflow.health import HealthPolicy
from fleetflow.kube.client import ClusterCredentials
from fleetflow.models import RebalanceRequest
from fleetflow.settings import Settings, settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_setting_is_documented_in_the_readme() -> None:
    text = README.read_text()
    for name, field in Settings.model_fields.items():
        if name == "health":
            for sub in HealthPolicy.model_fields:
                assert f"`FLEETFLOW_HEALTH__{sub.upper()}`" in text
        else:
            assert f"`FLEETFLOW_{name.upper()}`" in text, name
        assert field.description or name == "health", name


def test_environment_overrides_are_read_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEETFLOW_HOME", "/tmp/ff-home")
    monkeypatch.setenv("FLEETFLOW_REQUEST_TIMEOUT", "3.5")
    monkeypatch.setenv("FLEETFLOW_WAIT_TIMEOUT", "45")
    monkeypatch.setenv("FLEETFLOW_RETRY_DELAYS", "[0.5, 1]")
    monkeypatch.setenv("FLEETFLOW_HEALTH__FAILURE_THRESHOLD", "4")
    current = settings()
    assert current.home == Path("/tmp/ff-home")
    assert current.retry_delays == [0.5, 1.0]
    assert current.health == HealthPolicy(failure_threshold=4, success_threshold=2)
    # Defaults that live in the settings reach the models that use them.
    assert ClusterCredentials(name="c", kubeconfig="x").request_timeout == 3.5  # type: ignore[arg-type]
    assert RebalanceRequest(federation="f").wait_timeout == 45


def test_a_federation_may_set_its_own_health_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLEETFLOW_HEALTH__SUCCESS_THRESHOLD", "3")
    plain = Federation(name="f", host_cluster="h")
    assert plain.health_policy() == HealthPolicy(failure_threshold=2, success_threshold=3)
    strict = Federation(name="f", host_cluster="h", health=HealthPolicy(failure_threshold=5))
    assert strict.health_policy().failure_threshold == 5
    assert strict.with_member("f-a").with_member("f-a").member_clusters == ["f-a"]
    assert strict.with_member("f-a").without_member("f-a").member_clusters == []


def test_bad_values_are_refused() -> None:
    with pytest.raises(ValueError, match="greater than 0"):
        Settings(request_timeout=0)
