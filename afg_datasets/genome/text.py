"""What a genome encoder means to a reader, in its own words: the jinja macros of
`cards/genome/<name>.md` (summary, settings, seeds, arrays, tags, gradient), which the dataset
card, the croissant description, the Hub tags and the adaptive threat model use."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from afg_datasets.documents import read_text
from afg_datasets.errors import CorpusError
from afg_datasets.genome import ENCODERS
from afg_datasets.resources import resource_dir

# Each encoder's macros (cards/genome/<name>.md) and the arguments each takes.
ENCODER_TEXT = ("summary", "settings", "seeds", "arrays", "tags", "gradient")


def encoder_text(genome: Mapping[str, Any], layers: Sequence[Any]) -> dict[str, str]:
    """What a corpus's encoder (its genome section as recorded, its layers) means to a reader,
    from its own `cards/genome/<name>.md`; an encoder without one, or a name no encoder is
    registered under: its name and settings."""
    import jinja2

    name = genome["encoder"]  # a stranger's manifest names it: a path only when registered
    path = resource_dir("cards") / "genome" / f"{name}.md" if name in ENCODERS else None
    if path is None or not path.is_file():
        settings = ", ".join(f"{k}={v}" for k, v in sorted(genome.items()) if k != "encoder")
        return {
            "summary": f"the `{name}` encoder",
            "settings": settings,
            "seeds": "every seed derives from it",
            "arrays": "",
            "tags": "",
            "gradient": f"the `{name}` encoder",
        }
    template = read_text(path, CorpusError)
    macros = jinja2.Environment(autoescape=False).from_string(template).module
    arguments = {"summary": [genome], "settings": [genome], "arrays": [genome, layers]}
    return {
        part: str(getattr(macros, part)(*arguments.get(part, []))).strip() for part in ENCODER_TEXT
    }


def encoder_tags(text: Mapping[str, str]) -> list[str]:
    """The Hub tags an encoder's `tags` macro names (comma-separated)."""
    return [tag.strip() for tag in text["tags"].split(",") if tag.strip()]
