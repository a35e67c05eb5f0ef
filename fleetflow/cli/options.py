"""argparse options derived from a request model, so that every default lives in the model.

A field ``dry_run`` becomes ``--dry-run``; its help is the field's description and its default.
``bool`` is a flag (``--x/--no-x`` where the default is on), ``dict[str, str]`` a repeatable
``KEY=VALUE``, a field without a default a required option. Options the user leaves out stay out
of the parsed namespace (``argparse.SUPPRESS``), so the model fills in its own defaults.
"""

from __future__ import annotations

import argparse
import enum
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Annotated, Any, TypeAlias, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from fleetflow.cli.federations import FEDERATION_HELP, chosen_federation
from fleetflow.errors import InvalidRequest
from fleetflow.models import BlockKind, block_refs

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
Handler = Callable[[argparse.Namespace], int]
M = TypeVar("M", bound=BaseModel)


def flag(field: str) -> str:
    return "--" + field.replace("_", "-")


def key_value(value: str) -> tuple[str, str]:
    key, sep, val = value.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{value!r}: expected KEY=VALUE")
    return key, val


def add_request_options(
    parser: argparse.ArgumentParser,
    model: type[BaseModel],
    aliases: Mapping[str, Sequence[str]] | None = None,
) -> None:
    """One option per field of ``model``; ``aliases`` adds more spellings of a field's flag.
    A Federation block may be left out: ``request_from`` chooses the default one."""
    federations = _federation_fields(model)
    for name, field in model.model_fields.items():
        flags = [flag(name), *(aliases or {}).get(name, ())]
        chosen = name in federations
        parser.add_argument(
            *flags,
            dest=name,
            default=argparse.SUPPRESS,
            required=field.is_required() and not chosen,
            help=_help(field) + (FEDERATION_HELP if chosen else ""),
            **_kind(name, field),
        )


def _federation_fields(model: type[BaseModel]) -> list[str]:
    return [f for f, kind in block_refs(model).items() if kind is BlockKind.FEDERATION]


def request_from(args: argparse.Namespace, model: type[M]) -> M:
    """The request the parsed options ask for; an invalid one names the option at fault."""
    given = {name: getattr(args, name) for name in model.model_fields if hasattr(args, name)}
    values = {
        name: dict(v) if _base(model.model_fields[name]) is dict else v for name, v in given.items()
    }
    missing = [name for name in _federation_fields(model) if name not in values]
    try:
        if missing:  # the other options checked first: a typo is answered before any request
            model.model_validate({**values, **dict.fromkeys(missing, "-")})
            values.update(dict.fromkeys(missing, chosen_federation()))
        return model.model_validate(values)
    except ValidationError as exc:
        raise InvalidRequest(describe(exc)) from None


def describe(exc: ValidationError) -> str:
    """A validation error on one line, each problem led by the option it concerns."""
    problems = []
    for error in exc.errors():
        if error["type"] == "default_factory_not_called":
            continue  # a default computed from a field that is wrong: that field's error says it
        message = error["msg"].removeprefix("Value error, ")
        field = error["loc"][0] if error["loc"] else None
        problems.append(f"{flag(field)}: {message}" if isinstance(field, str) else message)
    return "; ".join(problems)


def _kind(name: str, field: FieldInfo) -> dict[str, Any]:
    """How argparse reads the field: an action, a type, a metavar."""
    base = _base(field)
    if base is bool:
        on = _default(field) is True
        return {"action": argparse.BooleanOptionalAction if on else "store_true"}
    if base is dict:
        return {"action": "append", "type": key_value, "metavar": "KEY=VALUE"}
    if base is list:
        return {"action": "append", "metavar": name.upper().removesuffix("S")}
    if base in (int, float):
        return {"type": base, "metavar": "N"}
    if base is str:
        return {"metavar": name.upper()}
    if isinstance(base, type) and issubclass(base, enum.Enum):
        return {"choices": [m.value for m in base]}
    raise TypeError(f"no command-line option for field {name!r} of type {field.annotation}")


def _base(field: FieldInfo) -> Any:
    """The field's type without ``Annotated`` or ``| None``: str, int, float, bool or dict."""
    annotation: Any = field.annotation
    while origin := get_origin(annotation):
        if origin is Annotated:
            annotation = get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            (annotation,) = [a for a in get_args(annotation) if a is not type(None)]
        else:
            return origin  # dict[str, str] -> dict
    return annotation


def _help(field: FieldInfo) -> str:
    text = (field.description or "").replace("%", "%%")
    if _base(field) in (dict, list):
        text += "; repeat for more"
    default = _default(field)
    if default is None or default is False or default in ({}, [], ""):
        return text
    shown = f"{default:g}" if isinstance(default, float) else str(default)
    if default is True:
        shown = "on"
    return f"{text} (default: {shown})"


def _default(field: FieldInfo) -> Any:
    """The field's default; None when it is computed from other fields (the description then
    says how) or when there is none."""
    if field.is_required() or field.default_factory_takes_validated_data:
        return None
    return field.get_default(call_default_factory=True)
