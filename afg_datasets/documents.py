"""Bounded loading of the YAML and JSON documents read from files (configs, corpus JSON,
recognizer folders): size, nesting depth, alias expansion and integer length are checked
before a value is built, so a small hostile file cannot hang or exhaust the machine, and every
failure is one error naming the file."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any, BinaryIO

import yaml

from afg_datasets.errors import AFGError

MAX_BYTES = 64 * 2**20  # a manifest of an ImageNet-scale corpus is a few MB
MAX_DEPTH = 64
MAX_NODES = 1_000_000  # YAML nodes after alias expansion
MAX_INT_DIGITS = 40  # every count, seed and size fits; 10**400 does not


def open_regular(path: Path, error: type[AFGError]) -> BinaryIO:
    """`path` opened for reading if it is a regular file (a link to one is followed), else
    `error` naming it: a FIFO or device is never read (it could block forever or never end).
    The one way a file from a user's folder is opened."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO must not block here
    except OSError as err:
        raise error(f"{path}: unreadable ({err.strerror or err})") from None
    mode = os.fstat(descriptor).st_mode
    if not stat.S_ISREG(mode):
        os.close(descriptor)
        kind = "a folder" if stat.S_ISDIR(mode) else "a pipe, socket or device"
        raise error(f"{path}: {kind}, not a regular file")
    os.set_blocking(descriptor, True)
    return os.fdopen(descriptor, "rb")


def read_bytes(path: Path, error: type[AFGError], limit: int = MAX_BYTES) -> bytes:
    """A regular file of at most `limit` bytes (`open_regular`), else `error` naming it."""
    try:
        with open_regular(path, error) as handle:  # at most limit + 1 bytes, even if it grows
            raw = handle.read(limit + 1)
    except OSError as err:
        raise error(f"{path}: unreadable ({err.strerror or err})") from None
    if len(raw) > limit:
        raise error(f"{path}: more than the {limit}-byte limit")
    return raw


def read_text(path: Path, error: type[AFGError]) -> str:
    """A text file of at most MAX_BYTES, read as UTF-8 (never a device or pipe without end)."""
    try:
        return read_bytes(path, error).decode("utf-8")
    except UnicodeDecodeError:
        raise error(f"{path}: not UTF-8 text") from None


def _check_nodes(node: yaml.Node, path: Path, error: type[AFGError]) -> None:
    """Walk the composed YAML graph as construction would (aliases expanded), within budget."""
    count = 0
    stack = [(node, 1)]
    while stack:
        current, depth = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise error(f"{path}: more than {MAX_NODES} YAML values (aliases expanded)")
        if depth > MAX_DEPTH:
            raise error(f"{path}: nested deeper than {MAX_DEPTH} levels")
        if isinstance(current, yaml.SequenceNode):
            stack += [(child, depth + 1) for child in current.value]
        elif isinstance(current, yaml.MappingNode):
            for key, value in current.value:
                if not isinstance(key, yaml.ScalarNode):
                    raise error(f"{path}: a mapping key that is not a plain value")
                stack += [(key, depth + 1), (value, depth + 1)]
        elif current.tag.endswith(":int") and len(current.value) > MAX_INT_DIGITS:
            raise error(f"{path}: the integer {current.value[:20]}... has too many digits")


def load_yaml(path: Path, error: type[AFGError]) -> Any:
    """A YAML document (safe tags only), bounded; `error` for anything wrong."""
    text = read_text(path, error)
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        if node is None:
            return None
        _check_nodes(node, path, error)
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise error(f"{path}: not valid YAML: {first}") from None
    except RecursionError:  # the parser recurses per level, before any node is counted
        raise error(f"{path}: nested deeper than YAML can be parsed") from None


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"the integer {text[:20]}... has too many digits")
    return int(text)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_json(text: str | bytes, where: str, error: type[AFGError]) -> Any:
    """A JSON document, bounded: no NaN or Infinity, integers of at most MAX_INT_DIGITS
    digits, nesting at most MAX_DEPTH."""
    try:
        data = json.loads(text, parse_int=_bounded_int, parse_constant=_no_constant)
    except (ValueError, RecursionError) as err:
        raise error(f"{where}: not valid JSON ({err})") from None
    if _depth(data) > MAX_DEPTH:
        raise error(f"{where}: nested deeper than {MAX_DEPTH} levels")
    return data


def _depth(data: Any) -> int:
    deepest, stack = 0, [(data, 1)]
    while stack:
        value, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_DEPTH:
            return depth
        if isinstance(value, dict):
            stack += [(v, depth + 1) for v in value.values()]
        elif isinstance(value, list):
            stack += [(v, depth + 1) for v in value]
    return deepest


JSON_NAMES = {dict: "an object", list: "a list", str: "a string", int: "an integer"}


def load_json(path: Path, error: type[AFGError], top: type = dict) -> Any:
    """A JSON file, bounded (size, depth, integers; see `parse_json`), whose top level is a
    `top` (every document this package reads is an object, but a list of class names): the
    shape is checked top level first, before any field is read."""
    data = parse_json(read_text(path, error), str(path), error)
    if not isinstance(data, top) or isinstance(data, bool):
        found = JSON_NAMES.get(type(data), "null" if data is None else type(data).__name__)
        raise error(f"{path}: top level: {found}, where {JSON_NAMES[top]} is expected")
    return data
