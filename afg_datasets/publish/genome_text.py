"""What a corpus's genome encoder means to a reader, in its own words: the jinja macros of
`cards/genome/<name>.md` (summary, settings, seeds, arrays), which the dataset card and the
croissant description both use."""

from __future__ import annotations

from typing import Any

from afg_datasets.documents import read_text
from afg_datasets.errors import CorpusError
from afg_datasets.genome import ENCODERS
from afg_datasets.resources import resource_dir

ENCODER_TEXT = ("summary", "settings", "seeds", "arrays")  # each encoder's macros, cards/genome/


def encoder_text(genome: dict[str, Any], layers: list[dict]) -> dict[str, str]:
    """What the corpus's encoder means to a reader, from its own `cards/genome/<name>.md`
    (jinja macros); an encoder without one, or a name no encoder is registered under: its name
    and settings."""
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
        }
    template = read_text(path, CorpusError)
    macros = jinja2.Environment(autoescape=False).from_string(template).module
    arguments = {"summary": [genome], "settings": [genome], "seeds": [], "arrays": [genome, layers]}
    return {name: str(getattr(macros, name)(*arguments[name])).strip() for name in ENCODER_TEXT}
