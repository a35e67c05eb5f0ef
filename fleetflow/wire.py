"""Models of fleetflow's API objects: Python names, the API's camelCase on the wire."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class WireModel(BaseModel):
    """Part of an object's spec or status as the API holds it. Unknown fields are dropped on
    read, so a status written back is exactly what fleetflow models."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore", frozen=True)

    def wire(self) -> dict[str, Any]:
        """The API form: camelCase, no unset optionals."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


class Condition(WireModel):
    """A status condition, as Kubernetes objects carry them."""

    type: str
    status: str
    reason: str = ""
    message: str = ""
    last_transition_time: str | None = Field(default=None, alias="lastTransitionTime")
