"""Saved blocks read through Prefect's REST API with httpx alone.

Importing Prefect takes about 0.7 s on a 2-core machine, more than a read command's whole
budget; ``fleetflow status`` and the choice of a default federation only need two or three
block documents, so they read them here. Flows keep loading blocks with Prefect's own classes
(``fleetflow.blocks.loading``), whose messages for a missing block are the ones below.

The API is the one Prefect itself would use: ``PREFECT_API_URL`` from the environment, else
from the active profile (``PREFECT_PROFILE``, else the profile file's ``active``); the caller
falls back to the local stack when neither names one.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from fleetflow.errors import InvalidRequest, StackError, UnknownName, prefect_overloaded

FEDERATION_SLUG = "fleetflow-federation"
CLUSTER_SLUG = "fleetflow-kube-cluster"


def missing_federation(name: str) -> UnknownName:
    return UnknownName(
        f"no Federation block named {name!r}: bootstrap it first with "
        "`fleetflow bootstrap --federation NAME --host-cluster BLOCK`"
    )


def missing_cluster(name: str) -> UnknownName:
    return UnknownName(
        f"no KubeCluster block named {name!r}: list them with `prefect block ls`, "
        "or save one (see `fleetflow testbed up` for an example)"
    )


def _profile_setting(key: str, env: dict[str, str]) -> str | None:
    home = Path(env.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()
    path = Path(env.get("PREFECT_PROFILES_PATH") or home / "profiles.toml").expanduser()
    try:
        profiles = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return None
    active = env.get("PREFECT_PROFILE") or profiles.get("active")
    value = (profiles.get("profiles") or {}).get(active, {}).get(key)
    return str(value) if value else None


def configured_api_url(env: dict[str, str] | None = None) -> str | None:
    """The Prefect API the user configured, or None (the caller then uses the local stack)."""
    env = dict(os.environ) if env is None else env
    return env.get("PREFECT_API_URL") or _profile_setting("PREFECT_API_URL", env)


def _auth_headers(env: dict[str, str]) -> dict[str, str]:
    key = env.get("PREFECT_API_KEY") or _profile_setting("PREFECT_API_KEY", env)
    return {"Authorization": f"Bearer {key}"} if key else {}


class BlockStore:
    """Block documents of one Prefect API, by block type slug and name."""

    def __init__(self, api_url: str, timeout: float = 10.0) -> None:
        env = dict(os.environ)
        auth = env.get("PREFECT_API_AUTH_STRING")
        self.api_url = api_url
        self._http = httpx.Client(
            base_url=api_url.rstrip("/") + "/",
            timeout=timeout,
            headers=_auth_headers(env),
            auth=tuple(auth.split(":", 1)) if auth and ":" in auth else None,  # type: ignore[arg-type]
        )

    def __enter__(self) -> BlockStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            response = self._http.request(method, path, **kwargs)
            if response.status_code != 404:
                response.raise_for_status()
        except httpx.HTTPStatusError as exc:
            raise prefect_overloaded(exc) or StackError(
                f"the Prefect API at {self.api_url} refused a request: {exc}"
            ) from None
        except httpx.HTTPError as exc:
            raise StackError(
                f"the Prefect API at {self.api_url} does not answer ({exc}): start it with "
                "`fleetflow up`, or set PREFECT_API_URL"
            ) from None
        return response

    def data(self, slug: str, name: str) -> dict[str, Any] | None:
        """The saved fields of the block (secrets included), or None when there is none."""
        found = self._call(
            "GET",
            # Quoted whole: a name never adds a segment or a query to the path.
            f"block_types/slug/{quote(slug, safe='')}/block_documents/name/{quote(name, safe='')}",
            params={"include_secrets": "true"},
        )
        if found.status_code == 404:
            return None
        return dict(found.json().get("data") or {})

    def names(self, slug: str) -> list[str]:
        """The names of the saved (not anonymous) blocks of that type, sorted."""
        found = self._call(
            "POST",
            "block_documents/filter",
            json={
                "block_types": {"slug": {"any_": [slug]}},
                "block_documents": {"is_anonymous": {"eq_": False}},
                "include_secrets": False,
            },
        )
        return sorted(str(doc["name"]) for doc in found.json())


def default_federation(configured: str | None, saved: list[str]) -> tuple[str, str]:
    """The federation a command uses when ``--federation`` is left out, and why: the one
    ``FLEETFLOW_FEDERATION`` names, else the only Federation block. Pure."""
    if configured:
        return configured, "FLEETFLOW_FEDERATION"
    if len(saved) == 1:
        return saved[0], "the only Federation block"
    if not saved:
        raise InvalidRequest(
            "no Federation block is saved: bootstrap one first with "
            "`fleetflow bootstrap --federation NAME --host-cluster BLOCK`"
        )
    raise InvalidRequest(
        f"{len(saved)} Federation blocks are saved ({', '.join(saved)}): choose one with "
        "--federation NAME, or set FLEETFLOW_FEDERATION"
    )
