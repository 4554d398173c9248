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
            "hand-written lists of >= 3 record fields outside records.py",
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
        found[keys[7]] = max(found[keys[7]], len(text.splitlines()))
        if module == "evaluation/bench.py":
            found[keys[8]] = len(text.splitlines())
        for node in ast.walk(ast.parse(text)):
            if not module.startswith(OWNERS) and _reads_manifest(node):
                found[keys[0]] += 1
            if isinstance(node, ast.arg) and node.arg == "manifest":
                found[keys[1]] += not module.startswith(("corpus/", "building/"))
            if module != "records.py" and len(_record_fields(node)) >= 3:
                found[keys[2]] += 1
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "hasattr":
                found[keys[3]] += "encoder" in ast.unparse(node.args[0])
            if isinstance(node, ast.arg) and node.annotation is not None:
                members = set(_union_members(node.annotation))
                found[keys[4]] += {"Corpus", "str"} <= members
            if isinstance(node, ast.ImportFrom) and node.module:
                found[keys[5]] += module.startswith("evaluation/") and ".publish" in node.module
                found[keys[6]] += module == "recognizer/recognizer.py" and node.module.endswith(
                    ".config"
                )
    return found


def _union_members(annotation: ast.AST):
    """The names a `A | B | ...` annotation (or a Sequence of one) unites."""
    if isinstance(annotation, ast.BinOp) and isinstance(annotation.op, ast.BitOr):
        yield from _union_members(annotation.left)
        yield from _union_members(annotation.right)
    elif isinstance(annotation, ast.Subscript) and ast.unparse(annotation.value) == "Sequence":
        yield from _union_members(annotation.slice)
    else:
        yield ast.unparse(annotation)


RECORD_FIELDS = [  # records.RECORD_COLUMNS' names (no import: it counts any checkout)
    *("key", "source_id", "image", "label", "pred", "is_adversarial", "attack"),
    *("attack_params", "success", "linf", "l2", "mixed_label"),
]


def _record_fields(node: ast.AST) -> list[str]:
    """The record field names a literal list, tuple, set or dict (its keys) spells out."""
    items = node.keys if isinstance(node, ast.Dict) else getattr(node, "elts", None)
    if not isinstance(node, ast.List | ast.Tuple | ast.Set | ast.Dict) or items is None:
        return []
    return [i.value for i in items if isinstance(i, ast.Constant) and i.value in RECORD_FIELDS]


def _reads_manifest(node: ast.AST) -> bool:
    """`x.manifest` or `manifest[...]` (a read of the corpus's manifest as a dict)."""
    if isinstance(node, ast.Attribute) and node.attr == "manifest":
        return True
    return isinstance(node, ast.Subscript) and ast.unparse(node.value).endswith("manifest")


if __name__ == "__main__":
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parents[1]
    for name, value in counts(root / "afg_datasets").items():
        print(f"{value:6d}  {name}")
