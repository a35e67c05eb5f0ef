"""Plain calls to Prefect's REST API, for what runs without Prefect's client (the core imports
no Prefect): a busy server (503, as SQLite under concurrent writers answers, or 429) is asked
again after a short, growing pause, about a minute in all, as Prefect's own client does."""

from __future__ import annotations

import time

import httpx

from fleetflow.errors import OVERLOADED_STATUSES, PrefectOverloaded, StackError

RETRY_PAUSES = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0)


def call(http: httpx.Client, method: str, path: str, **kwargs: object) -> httpx.Response:
    """One API call; a busy server (503, as SQLite under concurrent writers answers, or 429) is
    asked again after a short, growing pause."""
    pauses = list(RETRY_PAUSES)
    while True:
        try:
            response = http.request(method, path, **kwargs)  # type: ignore[arg-type]
        except httpx.HTTPError as exc:
            raise StackError(f"the Prefect API does not answer ({exc})") from None
        if response.status_code not in OVERLOADED_STATUSES:
            break
        if not pauses:
            raise PrefectOverloaded(response.status_code, method, response.request.url.path)
        time.sleep(pauses.pop(0))
    if response.status_code >= 400 and response.status_code != 404:
        raise StackError(f"the Prefect API refused {method} {path}: HTTP {response.status_code}")
    return response
