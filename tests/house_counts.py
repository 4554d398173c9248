"""The house counts of issue #41, from the source: `python tests/house_counts.py [ROOT]` prints
each count (run it on an older checkout's folder to compare)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

OWNERS = ("corpus/", "building/", "cli", "printers.py")  # where the manifest may be read


def counts(package: Path) -> dict[str, int]:
    found = dict.fromkeys(
        [
            "manifest reads outside corpus/, building/, CLI, printers",
            "manifest parameters outside corpus/, building/",
            "hasattr(encoder, ...) probes",
            "Corpus | str signatures",
            "evaluation -> publish imports",
            "recognizer.py -> config imports",
            "longest module (lines)",
            "evaluation/bench.py (lines)",
        ],
        0,
    )
    keys = list(found)
    for path in sorted(package.rglob("*.py")):
        module = path.relative_to(package).as_posix()
        text = path.read_text()
        found[keys[6]] = max(found[keys[6]], len(text.splitlines()))
        if module == "evaluation/bench.py":
            found[keys[7]] = len(text.splitlines())
        for node in ast.walk(ast.parse(text)):
            if not module.startswith(OWNERS) and _reads_manifest(node):
                found[keys[0]] += 1
            if isinstance(node, ast.arg) and node.arg == "manifest":
                found[keys[1]] += not module.startswith(("corpus/", "building/"))
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "hasattr":
                found[keys[2]] += "encoder" in ast.unparse(node.args[0])
            if isinstance(node, ast.arg) and node.annotation is not None:
                annotation = ast.unparse(node.annotation)
                found[keys[3]] += "Corpus" in annotation and "str" in annotation
            if isinstance(node, ast.ImportFrom) and node.module:
                found[keys[4]] += module.startswith("evaluation/") and ".publish" in node.module
                found[keys[5]] += module == "recognizer/recognizer.py" and node.module.endswith(
                    ".config"
                )
    return found


def _reads_manifest(node: ast.AST) -> bool:
    """`x.manifest` or `manifest[...]` (a read of the corpus's manifest as a dict)."""
    if isinstance(node, ast.Attribute) and node.attr == "manifest":
        return True
    return isinstance(node, ast.Subscript) and ast.unparse(node.value).endswith("manifest")


if __name__ == "__main__":
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parents[1]
    for name, value in counts(root / "afg_datasets").items():
        print(f"{value:6d}  {name}")
