"""The corpus wing of `afg`: verify, card, show, push, push-recognizer (registered by
`cli.py`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from afg_datasets import printers
from afg_datasets.bounds import MAX_COMMIT_FILES
from afg_datasets.cli_options import (
    CorpusArg,
    DryRunOpt,
    PrivateOpt,
    RevisionOpt,
    TimeoutOpt,
)
from afg_datasets.printers import console


def card(directory: CorpusArg):
    """Regenerate the dataset card (README.md) from manifest.json and stats.json."""
    from afg_datasets.corpus.corpus import Corpus, local_folder
    from afg_datasets.publish.card import refresh_card

    typer.echo(f"wrote {refresh_card(Corpus.open(local_folder(directory, 'afg card')))}")


def verify(directory: CorpusArg):
    """Check every file against the manifest, the schema against the card, splits and keys."""
    from afg_datasets.corpus.corpus import verify_corpus

    problems = verify_corpus(directory)
    for line in problems:
        typer.echo(line)
    if problems:
        console.print(f"[bold red]{len(problems)} problem(s)[/] in {directory}")
        raise typer.Exit(code=1)
    typer.echo(f"{directory}: OK")


def push(
    directory: CorpusArg,
    repo_id: Annotated[str, typer.Option(help="Hub dataset repo, NAMESPACE/NAME.")],
    private: PrivateOpt = False,
    revision: RevisionOpt = None,
    dry_run: DryRunOpt = False,
    timeout: TimeoutOpt = 60.0,
    commit_files: Annotated[
        int | None,
        typer.Option(
            min=1,
            max=MAX_COMMIT_FILES,
            help="Files per commit, resumable (default: one commit; 100 per commit above "
            "1,000 files or 1 GiB).",
        ),
    ] = None,
):
    """Publish a corpus to the Hugging Face Hub (token: HF_TOKEN or the saved login). A push
    in several commits resumes when re-run."""
    from afg_datasets.corpus.corpus import Corpus
    from afg_datasets.publish.hub import push as push_corpus

    plan = push_corpus(
        Corpus.open(directory),
        repo_id,
        private=private,
        revision=revision,
        dry_run=dry_run,
        timeout=timeout,
        commit_files=commit_files,
    )
    printers.upload(plan, repo_id, dry_run)


def push_recognizer(
    directory: Annotated[Path, typer.Argument(help="A saved recognizer (afg fit-recognizer).")],
    repo_id: Annotated[str, typer.Option(help="Hub model repo, NAMESPACE/NAME.")],
    private: PrivateOpt = False,
    revision: RevisionOpt = None,
    dry_run: DryRunOpt = False,
    timeout: TimeoutOpt = 60.0,
):
    """Publish a saved recognizer to a Hub model repo; load it with
    Recognizer.from_pretrained(REPO_ID)."""
    from afg_datasets.publish.hub import push_recognizer as push_model

    plan = push_model(directory, repo_id, private, revision, dry_run, timeout)
    printers.upload(plan, repo_id, dry_run)


def show(
    directory: CorpusArg,
    key: Annotated[str, typer.Argument(help="Record key, e.g. digits-00004-fgsm.")],
    out: Annotated[
        Path | None, typer.Option(help="PNG to write (default: ./show-KEY.png).")
    ] = None,
):
    """One figure: clean image, adversarial image, amplified perturbation, both genomes."""
    from afg_datasets.corpus.corpus import Corpus
    from afg_datasets.evaluation.show import show as show_record

    path = show_record(Corpus.open(directory), key, out)
    typer.echo(f"wrote {path}")


COMMANDS = {
    "verify": verify,
    "card": card,
    "show": show,
    "push": push,
    "push-recognizer": push_recognizer,
}
