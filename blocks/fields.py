"""What fleetflow's blocks share: a schema built once per class, and saving only what changed."""

from __future__ import annotations

import copy
from typing import Any, cast

from prefect.blocks.core import Block


class SchemaOnce:
    """A block mixin (``class KubeCluster(SchemaOnce, Block)``): its JSON schema is built once
    per class and handed out as a copy.

    Prefect rebuilds a block's schema for every field it saves, to learn which fields are
    secret: a KubeCluster's block document took 24 ms of CPU, 2 ms with this (a join saves two
    blocks, the suite a few hundred). The schema depends only on the class, so building it once
    changes nothing but the time (a copy, as Prefect's callers may change what they get)."""

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        key = (cls, args, tuple(sorted(kwargs.items())))
        if key not in _SCHEMAS:
            _SCHEMAS[key] = super().model_json_schema(*args, **kwargs)  # type: ignore[misc]
        return copy.deepcopy(_SCHEMAS[key])


_SCHEMAS: dict[Any, dict[str, Any]] = {}
"""Each block class's schema, by the arguments it was asked with."""


def block_fields(block: Block) -> dict[str, Any]:
    """The declared fields, secrets revealed (for comparison only; never log this)."""
    data = {}
    for key in type(block).model_fields:
        value = getattr(block, key)
        data[key] = value.get_secret_value() if hasattr(value, "get_secret_value") else value
    return data


def save_if_changed(block: Block, name: str, *, dry_run: bool = False) -> str:
    """Save ``block`` as ``name`` unless the stored one is the same: create, update, unchanged.

    With ``dry_run`` only say which it would be.
    """
    try:
        current = cast(Block, type(block).load(name, validate=False))
    except ValueError:
        current = None
    if current is not None and block_fields(current) == block_fields(block):
        return "unchanged"
    if not dry_run:
        block.save(name, overwrite=current is not None)
    return "create" if current is None else "update"
