"""The `afg` command line: parse -> config -> call. No pipeline logic lives here."""

from __future__ import annotations

import logging
from typing import Annotated

import typer
from rich.markup import escape
from typer.core import TyperGroup

from afg_datasets import __version__, cli_build, cli_corpus, cli_research
from afg_datasets.environment import raised_during_import, stack_problem
from afg_datasets.errors import AFGError, first_line
from afg_datasets.printers import console


class _OneLineErrors(TyperGroup):
    """The one error handler: an error the user caused (bad value, unusable file or folder)
    ends in one line naming it and exit 2; `--debug` shows the traceback instead."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except (ImportError, OSError, RuntimeError) as err:
            if raised_during_import(err):  # a broken torch/torchvision/advertorch is named
                problem = stack_problem()
                if problem:
                    self._fail(ctx, problem)
            if isinstance(err, RuntimeError) and _out_of_memory(err):
                self._fail(ctx, f"out of memory ({first_line(err)[:200]}): {MEMORY_HINT}")
            if isinstance(err, OSError):
                self._fail(ctx, str(err))
            raise
        except AFGError as err:
            self._fail(ctx, str(err))
        except MemoryError as err:
            self._fail(ctx, f"out of memory ({first_line(err)[:200]}): {MEMORY_HINT}")

    @staticmethod
    def _fail(ctx, text: str) -> None:
        if ctx.obj and ctx.obj.get("debug"):
            raise
        # the message verbatim: a bracket or `:name:` in it is text, not markup or emoji
        message = escape(" ".join(text.split()))
        console.print(f"[bold red]error:[/] {message}", highlight=False, emoji=False)
        raise typer.Exit(code=2) from None


MEMORY_HINT = (
    "the settings ask for more memory than this machine has; lower batch_size, the genome's "
    "image_size or size, or --limit"
)


def _out_of_memory(err: BaseException) -> bool:
    """An allocation that failed (numpy's MemoryError, torch's CPU or CUDA allocator): the
    settings or the input asked for more memory than there is, whichever number did it."""
    text = str(err)
    return (
        isinstance(err, MemoryError)
        or type(err).__name__ == "OutOfMemoryError"
        or any(
            words in text
            for words in ("can't allocate memory", "not enough memory", "out of memory")
        )
    )


app = typer.Typer(
    cls=_OneLineErrors,
    help="Build, publish and consume Adversarial Feature Genome (AFG) corpora.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)


def _version(show: bool) -> None:
    if show:
        typer.echo(f"afg-datasets {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log progress details.")] = False,
    debug: Annotated[
        bool, typer.Option(help="Show tracebacks instead of one-line errors.")
    ] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
):
    ctx.obj = {"debug": debug}
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("huggingface_hub").propagate = False  # it prints its own, once


# Registered by wing, in this order in `afg --help`: build, corpus, research.
for wing in (cli_build, cli_corpus, cli_research):
    for name, command in wing.COMMANDS.items():
        app.command(name)(command)


if __name__ == "__main__":
    app()
