"""Declarative validation for the typed config sections (pydantic v2 dataclasses, strict): a bool
is not an int, a string is not a number, NaN and infinity are refused, sizes and counts are
bounded, and every failure is one `ConfigError` naming the field path, the value and the rule."""

from __future__ import annotations

import dataclasses
import functools
import typing
from typing import Annotated, Any, TypeVar

import pydantic.dataclasses
from pydantic import ConfigDict, Field, ValidationError

from afg_datasets.errors import ConfigError

STRICT = ConfigDict(strict=True, allow_inf_nan=False, extra="forbid")
LIMITS_NOTE = "a safety limit against runaway sizes; raise it in afg_datasets/bounds.py if needed"

# Field types shared by the sections. Upper bounds are safety limits (see LIMITS_NOTE).
PositiveFloat = Annotated[float, Field(gt=0)]
Fraction = Annotated[float, Field(ge=0, le=1)]
Seed = Annotated[int, Field(ge=0, le=2**63 - 1)]

T = TypeVar("T")


def bounded(high: int) -> Any:
    """A positive integer no larger than `high`."""
    return Annotated[int, Field(gt=0, le=high)]


def describe(err: ValidationError, prefix: str) -> str:
    """One line per failed rule: `field.path: rule, got value`."""
    lines = []
    for e in err.errors():
        where = prefix + ".".join(str(p) for p in e["loc"]) or prefix.rstrip(".") or "config"
        message = e["msg"].removeprefix("Value error, ")
        if e["type"] in ("less_than_equal", "less_than"):
            message += f" ({LIMITS_NOTE})"
        if e["type"] == "value_error":
            lines.append(message)
        else:
            lines.append(f"{where}: {message}, got {e['input']!r}")
    return "; ".join(lines)


def section(prefix: str):
    """Class decorator: a frozen, strictly validated dataclass whose errors are ConfigErrors
    naming `prefix` + the field (e.g. `genome.groups`)."""

    def wrap(cls: type[T]) -> type[T]:
        cls = pydantic.dataclasses.dataclass(frozen=True, config=STRICT)(cls)
        init = cls.__init__

        @functools.wraps(init)
        def checked_init(self, *args, **kwargs):
            try:
                init(self, *args, **kwargs)
            except ValidationError as err:
                raise ConfigError(describe(err, prefix)) from None

        cls.__init__ = checked_init
        return cls

    return wrap


def from_mapping(cls: type[T], data: Any, prefix: str) -> T:
    """Dataclass `cls` from a mapping (a YAML section, a manifest's config), rejecting unknown
    keys by their dotted name. A nested dataclass field is read the same way; a field whose
    metadata names a `parse` function (a section chosen by name, such as `genome`) is read by it."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'} must be a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    odd = [k for k in data if not isinstance(k, str)]
    if odd:
        raise ConfigError(
            f"{prefix.rstrip('.') or 'config'}: key {odd[0]!r} is not a name; allowed: "
            f"{', '.join(fields)}"
        )
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown key(s) {[prefix + k for k in unknown]}; allowed: {', '.join(fields)}"
        )
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        parse = fields[key].metadata.get("parse")
        if parse is not None:
            value = parse(value)
        elif dataclasses.is_dataclass(hints[key]):
            value = from_mapping(hints[key], value, f"{prefix}{key}.")
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ConfigError(f"invalid {prefix.rstrip('.') or 'config'}: {err}") from None
