"""Compare a block with the stored one, so unchanged blocks are never rewritten."""

from __future__ import annotations

from typing import Any, cast

from prefect.blocks.core import Block


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
