"""Write docs/cli.md, the command-line reference, from the typer app itself (every command,
argument and option with its default and help). `tests/test_docs.py` fails when the file differs
from what this makes, so a command or option added without its reference fails CI.

    python tests/cli_reference.py        # regenerate docs/cli.md
"""

from __future__ import annotations

import sys
from pathlib import Path

REFERENCE = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def _cell(text: object) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _default(param) -> str:
    if getattr(param, "is_flag", False) and not param.secondary_opts:
        return "off" if not param.default else "on"
    if param.required:
        return "required"
    if param.default is None or param.default == () or param.default == []:
        return ""
    if isinstance(param.default, bool):
        return "on" if param.default else "off"
    return f"`{_cell(param.default)}`"


def _rows(params) -> list[str]:
    rows = []
    for param in params:
        if param.name == "help":
            continue
        names = ", ".join(f"`{name}`" for name in [*param.opts, *param.secondary_opts])
        if param.param_type_name == "argument":
            names = f"`{param.name.upper()}`" + (" ..." if param.nargs == -1 else "")
        rows.append(f"| {names} | {_default(param)} | {_cell(param.help or '')} |")
    return rows


def _table(params) -> list[str]:
    rows = _rows(params)
    return ["| argument / option | default | what |", "| --- | --- | --- |", *rows] if rows else []


def reference() -> str:
    """The whole reference as Markdown, in `afg --help`'s order."""
    import typer

    from afg_datasets.cli import app

    group = typer.main.get_command(app)
    lines = [
        "# Command-line reference",
        "",
        "Generated from the `afg` app by `python tests/cli_reference.py`; `tests/test_docs.py`",
        "fails when this file and the app differ. `afg COMMAND --help` prints the same.",
        "",
        "## afg (options before the command)",
        "",
        *_table(group.params),
    ]
    for name, command in group.commands.items():
        usage = " ".join(command.collect_usage_pieces(typer.Context(command)))
        lines += ["", f"## afg {name}", "", f"`afg {name} {usage}`", ""]
        lines += [" ".join(command.help.split()) if command.help else "", ""]
        lines += _table(command.params)
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    REFERENCE.write_text(reference())
    sys.stdout.write(f"wrote {REFERENCE}\n")
