"""JSON Patch (RFC 6902) and JSON merge patch (RFC 7386) over plain JSON values. Pure.

Both return a new document and never change their input: a patch that fails part-way leaves
nothing half-applied, so bad input changes nothing. A patch that does not apply raises
``PatchError`` (an ``InvalidRequest``) with one line naming the operation (by position and
kind) and the path.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from fleetflow.errors import InvalidRequest, PatchError

__all__ = ["PatchOp", "json_equal", "json_patch", "merge_patch", "parse_ops", "pointer"]


def merge_patch(target: Any, patch: Any) -> Any:
    """JSON merge patch (RFC 7386): dicts merge, ``None`` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class PatchOp(BaseModel):
    """One RFC 6902 operation. ``value`` may be JSON null, so whether it was given at all is
    read from the fields that were set, not from its value."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True)

    op: Literal["add", "remove", "replace", "move", "copy", "test"]
    path: str
    value: Any = None
    from_: str | None = Field(default=None, alias="from")

    @model_validator(mode="after")
    def _operands(self) -> PatchOp:
        if self.op in ("add", "replace", "test") and "value" not in self.model_fields_set:
            raise ValueError(f"{self.op} needs a value")
        if self.op in ("move", "copy") and self.from_ is None:
            raise ValueError(f"{self.op} needs a from")
        pointer(self.path)
        if self.from_ is not None:
            pointer(self.from_)
        return self

    def describe(self) -> str:
        moved = f" from {self.from_}" if self.op in ("move", "copy") else ""
        return f"{self.op} {self.path or '(root)'}{moved}"


def parse_ops(raw: Any) -> list[PatchOp]:
    """A JSON Patch document (a list of operations) as models; bad input is one line."""
    if not isinstance(raw, list):
        raise InvalidRequest(f"a JSON patch is a list of operations, got {type(raw).__name__}")
    ops = []
    for i, item in enumerate(raw):
        try:
            ops.append(PatchOp.model_validate(item))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            detail = first["msg"].removeprefix("Value error, ")
            raise InvalidRequest(
                f"JSON patch operation {i}: {where + ': ' if where else ''}{detail}"
            ) from None
    return ops


_BAD_ESCAPE = re.compile(r"~(?![01])")


def pointer(path: str) -> list[str]:
    """The reference tokens of a JSON Pointer (RFC 6901): ``~1`` is ``/``, ``~0`` is ``~``."""
    if path == "":
        return []
    if not path.startswith("/"):
        raise ValueError(f"JSON pointer {path!r} must be empty or start with /")
    tokens = path[1:].split("/")
    if _BAD_ESCAPE.search(path):
        raise ValueError(f"JSON pointer {path!r} has a ~ not followed by 0 or 1")
    # ~1 first: "~01" is the escape of "~1", which must decode to those two characters, not "/"
    return [t.replace("~1", "/").replace("~0", "~") for t in tokens]


def json_equal(a: Any, b: Any) -> bool:
    """Equality as JSON means it: ``True`` is not ``1``, ``1`` is ``1.0``, dict order is free."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return type(a) is type(b) and a == b


def json_patch(doc: Any, ops: Iterable[PatchOp | Mapping[str, Any]]) -> Any:
    """Apply a JSON Patch to a copy of ``doc``; the first operation that does not apply stops
    it with ``PatchError`` (and ``doc`` is as it was)."""
    checked = [op if isinstance(op, PatchOp) else parse_ops([op])[0] for op in ops]
    result = copy.deepcopy(doc)
    for i, op in enumerate(checked):
        try:
            result = _apply(result, op)
        except PatchError as exc:
            raise PatchError(
                f"JSON patch operation {i} ({op.describe()}) does not apply: {exc}"
            ) from None
    return result


def _apply(doc: Any, op: PatchOp) -> Any:
    if op.op == "add":
        return _add(doc, pointer(op.path), copy.deepcopy(op.value))
    if op.op == "remove":
        return _remove(doc, pointer(op.path))[0]
    if op.op == "replace":
        tokens = pointer(op.path)
        if not tokens:
            return copy.deepcopy(op.value)
        parent, last = _parent(doc, tokens), tokens[-1]
        if isinstance(parent, dict):
            if last not in parent:
                raise PatchError(f"no member {last!r}")
            parent[last] = copy.deepcopy(op.value)
        else:
            parent[_index(parent, last, end_ok=False)] = copy.deepcopy(op.value)
        return doc
    if op.op == "test":
        if not json_equal(_get(doc, pointer(op.path)), op.value):
            raise PatchError("the value there is different")
        return doc
    assert op.from_ is not None  # the model checked it
    source = pointer(op.from_)
    if op.op == "copy":
        return _add(doc, pointer(op.path), copy.deepcopy(_get(doc, source)))
    target = pointer(op.path)
    if target[: len(source)] == source and len(target) > len(source):
        raise PatchError("cannot move a value into one of its own children")
    doc, value = _remove(doc, source)
    return _add(doc, target, value)


def _index(container: list[Any], token: str, *, end_ok: bool) -> int:
    """An array index token: digits without leading zeros, or ``-`` (past the end) where an
    add may append."""
    if token == "-" and end_ok:
        return len(container)
    if not token.isdigit() or (len(token) > 1 and token[0] == "0") or not token.isascii():
        raise PatchError(f"{token!r} is not an array index")
    index = int(token)
    if index > len(container) or (index == len(container) and not end_ok):
        raise PatchError(f"index {index} is out of range (the array has {len(container)} items)")
    return index


def _parent(doc: Any, tokens: list[str]) -> Any:
    parent = _get(doc, tokens[:-1])
    if not isinstance(parent, dict | list):
        raise PatchError("its parent is not an object or array")
    return parent


def _get(doc: Any, tokens: list[str]) -> Any:
    here = doc
    for token in tokens:
        if isinstance(here, dict):
            if token not in here:
                raise PatchError(f"no member {token!r}")
            here = here[token]
        elif isinstance(here, list):
            here = here[_index(here, token, end_ok=False)]
        else:
            raise PatchError(f"cannot look up {token!r} in a {type(here).__name__}")
    return here


def _add(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent, last = _parent(doc, tokens), tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    else:
        parent.insert(_index(parent, last, end_ok=True), value)
    return doc


def _remove(doc: Any, tokens: list[str]) -> tuple[Any, Any]:
    """The document without the value at ``tokens``, and that value."""
    if not tokens:
        raise PatchError("cannot remove the whole document")
    parent, last = _parent(doc, tokens), tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"no member {last!r}")
        return doc, parent.pop(last)
    return doc, parent.pop(_index(parent, last, end_ok=False))


def identity(manifest: Any) -> tuple[Any, ...]:
    """What names an object: apiVersion, kind, name and namespace. A patch for one member must
    leave it as it was: else a template patched for us-east-1 lands in its ``kube-system``."""
    meta = manifest.get("metadata") if isinstance(manifest, dict) else None
    meta = meta if isinstance(meta, dict) else {}
    found = manifest if isinstance(manifest, dict) else {}
    return (found.get("apiVersion"), found.get("kind"), meta.get("name"), meta.get("namespace"))
