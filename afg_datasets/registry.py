"""Explicit name -> entry registries that feed the CLI's choices and error messages.

An entry may be given as `"package.module:attribute"`: it is imported on first lookup, so the
names (the CLI's choices) are known without importing what the entries need (torch). The paths
are this package's own; a name from a config or a corpus is only ever looked up, never imported.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Generic, TypeVar

from afg_datasets.errors import ConfigError

T = TypeVar("T")


class Registry(Mapping[str, T], Generic[T]):
    """A read-only mapping whose lookups fail with the list of valid names."""

    def __init__(
        self,
        kind: str,
        entries: Mapping[str, T | str],
        grouped: Callable[[Mapping[str, T | str]], str] | None = None,
    ):
        self.kind = kind
        self._entries = dict(entries)
        self._grouped = grouped  # the valid names as the error shows them (default: listed)

    def __getitem__(self, name: str) -> T:
        try:
            entry = self._entries[name]
        except (KeyError, TypeError):
            valid = self._grouped(self._entries) if self._grouped else ", ".join(self._entries)
            raise ConfigError(
                f"unknown {self.kind} {name!r}; valid {self.kind}s: {valid}"
            ) from None
        if isinstance(entry, str):
            module, _, attribute = entry.partition(":")
            entry = self._entries[name] = getattr(importlib.import_module(module), attribute)
        return entry

    def __contains__(self, name: object) -> bool:
        """Whether `name` is registered (nothing imported, nothing raised)."""
        return isinstance(name, str) and name in self._entries

    def __iter__(self):
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
