"""Declarative validation for the typed config sections (pydantic v2 dataclasses, strict): a bool
is not an int, a string is not a number, NaN and infinity are refused, sizes and counts are
bounded, and every failure is one `ConfigError` naming the field path, the value and the rule."""

from __future__ import annotations

import dataclasses
import functools
import re
import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import pydantic.dataclasses
from pydantic import ConfigDict, Field, ValidationError

from afg_datasets.bounds import MAX_LR
from afg_datasets.errors import ConfigError

STRICT = ConfigDict(strict=True, allow_inf_nan=False, extra="forbid")
LIMITS_NOTE = "a safety limit against runaway sizes; raise it in afg_datasets/bounds.py if needed"

# Field types shared by the sections. Upper bounds are safety limits (see LIMITS_NOTE).
PositiveFloat = Annotated[float, Field(gt=0)]
LearningRate = Annotated[float, Field(gt=0, le=MAX_LR)]  # reaches an optimizer: bounded


def count_text(text: str, high: int) -> int | None:
    """The count a text spells in ASCII digits (an environment variable, a file's name or
    content), if it is one in 0..`high`; None otherwise ('²' and '٣' are digits to
    `str.isdigit` but not counts; a 20-digit one is no count either)."""
    text = text.strip()
    if not re.fullmatch(r"[0-9]{1,18}", text):
        return None
    value = int(text)
    return value if value <= high else None


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
    metadata holds a `Choice` (a section chosen by name) or a `parse` function is read by it."""
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
        choice = fields[key].metadata.get("choice")
        if parse is not None:
            value = parse(value)
        elif choice is not None:
            value = choice.parse(value)
        elif dataclasses.is_dataclass(hints[key]):
            value = from_mapping(hints[key], value, f"{prefix}{key}.")
        kwargs[key] = value
    try:
        return cls(**kwargs)
    except TypeError as err:
        raise ConfigError(f"invalid {prefix.rstrip('.') or 'config'}: {err}") from None


@dataclass(frozen=True)
class Choice:
    """A config section chosen by name (a discriminated union): the `key` field names an entry
    of `registry`, and that entry's own `Config` (a `section` whose `key` field is the entry's
    name) is the whole section, so only its settings are validated and hashed."""

    registry: Mapping[str, Any]
    key: str  # the discriminating field: `encoder`, `name`
    default: str
    prefix: str  # `genome.`, `source.`

    def settings(self, name: str) -> list[str]:
        return [f.name for f in dataclasses.fields(self.registry[name].Config)]

    def parse(self, data: Any) -> Any:
        """The chosen entry's Config from a mapping; a key it does not have is refused by name."""
        where = self.prefix.rstrip(".")
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where} must be a mapping, got {data!r}")
        name = data.get(self.key, self.default)
        names = self.settings(name)
        unknown = sorted(str(key) for key in data if key not in names)
        if unknown:
            kind = getattr(self.registry, "kind", where)
            raise ConfigError(
                f"{', '.join(self.prefix + k for k in unknown)}: not a setting of the {name!r} "
                f"{kind}; its settings: {', '.join(names)}"
            )
        return from_mapping(self.registry[name].Config, {**data, self.key: name}, self.prefix)

    def recorded(self, data: Any) -> Any:
        """A section as a manifest recorded it. Before format 1.2 it could list other entries'
        settings too, which never affected the corpus: those are dropped (a key no entry has
        is kept, for `parse` to refuse)."""
        if not isinstance(data, Mapping):
            return data
        own = self.settings(data.get(self.key, self.default))
        others = {key for name in self.registry for key in self.settings(name)}
        return {k: v for k, v in data.items() if k in own or k not in others}

    def default_config(self) -> Any:
        return self.parse({})

    def update(self, config: Any, changes: Mapping[str, Any]) -> Any:
        """`config` with `changes`; a change of entry keeps the settings both entries have
        (the others take the new entry's defaults, or a value in `changes`)."""
        name = changes.get(self.key, getattr(config, self.key))
        names = self.settings(name)
        kept = {k: v for k, v in dataclasses.asdict(config).items() if k in names}
        return self.parse({**kept, **changes, self.key: name})


def hub_repo_id(value: str, what: str = "--repo-id") -> str:
    """A Hub repo id, NAMESPACE/NAME, by huggingface_hub's own validator; a ConfigError naming
    it and the rule otherwise (checked before any work or request)."""
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        if str(value).count("/") != 1:
            raise HFValidationError("it must look like NAMESPACE/NAME")
        validate_repo_id(str(value))
    except HFValidationError as err:
        rule = str(err).splitlines()[0][:200]
        raise ConfigError(f"{what} {str(value)[:100]!r} is not a Hub repo id: {rule}") from None
    return str(value)


REVISION = re.compile(r"^(?!-)(?!.*\.\.)(?!.*//)[A-Za-z0-9._/-]{1,200}(?<![/.])$")


def hub_revision(value: str | None) -> str | None:
    """A branch name a Hub repo takes (letters, digits, . _ - /; no '..'), or None."""
    if value is not None and not REVISION.fullmatch(value):
        raise ConfigError(
            f"--revision {value[:100]!r} is not a branch name: use letters, digits and . _ - / "
            "(not starting with '-', no '..' or '//', not ending with '/' or '.')"
        )
    return value


SETTING = re.compile(r"^([a-z][a-z0-9_]{0,63})=(.{0,200})$")


def setting_pairs(values: list[str], option: str = "--set") -> dict[str, Any]:
    """`NAME=VALUE` pairs as a mapping; each VALUE read as an integer, a number, true/false,
    none, or else the text itself (the section they go to checks each against its type)."""
    settings: dict[str, Any] = {}
    for value in values:
        match = SETTING.fullmatch(value)
        if not match:
            raise ConfigError(
                f"{option} {value[:100]!r}: expected NAME=VALUE (a lowercase setting name, a "
                "value of at most 200 characters)"
            )
        name, text = match.groups()
        settings[name] = _scalar(text)
    return settings


def _scalar(text: str) -> Any:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text
