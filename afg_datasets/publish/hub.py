"""`afg push`: publish a verified corpus to the Hugging Face Hub through huggingface_hub.

The token comes from HF_TOKEN or the saved login and is never printed or logged; HF_ENDPOINT is
honoured by huggingface_hub itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import DatasetCard, HfApi, ModelCard, constants

from afg_datasets.checks import hub_repo_id, hub_revision
from afg_datasets.corpus.corpus import Corpus
from afg_datasets.errors import first_line
from afg_datasets.layout import (
    CARD_FILE,
    CROISSANT_FILE,
    MANIFEST_FILE,
    PUBLISHED_EXTRAS,
    RECOGNIZER_FILES,
    RECOGNIZER_OPTIONAL,
    plain_name,
    published_name,
    regular_file,
)
from afg_datasets.publish.client import (
    PushError,
    UploadFile,
    additions,
    commit,
    ensure_repo,
    holds,
    hub_timeouts,
    remote_files,
    upload_files,
    upload_in_commits,
)

# A corpus with more files or bytes than these is pushed in commits of at most COMMIT_FILES
# files / COMMIT_BYTES bytes (client.py), data first and the card, croissant.json and manifest
# last; a push that is killed or cut off resumes when re-run, skipping files the repo already
# holds with the same content.
LARGE_FILES = 1_000
LARGE_BYTES = 2**30
COMMIT_FILES = 100
REQUIRED_METADATA = ("pretty_name", "license", "task_categories", "tags", "configs", "dataset_info")
TIMEOUT_SECONDS = 60.0  # connect, read, write and pool timeout of every Hub request


@dataclass(frozen=True)
class PushPlan:
    """What a push does to the repo: uploads, deletes (the repo's files under the corpus's own
    folders and names that this corpus lacks: another build's), and keeps (everything else,
    named). `delete` and `kept` are None when the repo could not be listed (a dry run offline)."""

    upload: list[UploadFile]
    delete: list[str] | None = None
    kept: list[str] | None = None
    odd: list[str] | None = None  # kept: names no corpus file has (`layout.plain_name`)
    unlisted: str | None = None  # why a dry run could not list the repo


def repo_changes(held: list[str], upload: list[UploadFile]) -> PushPlan:
    """The plan for a repo holding `held`: the repo ends equal to the corpus in what it owns.
    A listed name is data: only a plain path in the corpus's own folders is ever deleted."""
    going = {item.path for item in upload} | {CARD_FILE, CROISSANT_FILE}
    others = sorted(set(held) - going)
    delete = [path for path in others if published_name(path)]
    kept = [path for path in others if plain_name(path) and not published_name(path)]
    odd = [path for path in others if not plain_name(path)]
    return PushPlan(upload, delete, kept, odd)


def upload_plan(corpus: Corpus) -> list[UploadFile]:
    """What `afg push` uploads, sorted, with sizes: exactly the manifest's files (verified
    before), plus the card, manifest, stats and derived figures by their fixed names
    (`layout.PUBLISHED_EXTRAS`) where present. Nothing by glob, never a symlink."""
    root = corpus.root
    paths = [e["path"] for e in corpus.files()]
    for name in PUBLISHED_EXTRAS:
        why = regular_file(root, name)
        if why is None:
            paths.append(name)
        elif why != "missing":
            raise PushError(f"{root / name}: {why}; refusing to publish it")
    return [UploadFile(p, (root / p).stat().st_size) for p in sorted(set(paths))]


def validate_card(root: Path) -> DatasetCard:
    """Parse the card with huggingface_hub and check the metadata the Hub needs."""
    path = root / CARD_FILE
    if not path.is_file():
        raise PushError(f"{path}: missing; run `afg card {root}`")
    try:
        card = DatasetCard.load(path)
    except Exception as err:  # noqa: BLE001 - YAML and card parse errors come in many types
        first = first_line(err)
        raise PushError(
            f"{path}: not a parseable dataset card ({first}); run `afg card {root}`"
        ) from None
    return _with_metadata(card, str(path), root)


def published_card(corpus: Corpus, repo_id: str) -> bytes:
    """The card as it is uploaded (its snippets load `repo_id`), rendered once and checked as
    the card on disk is: the bytes validated are the bytes that go."""
    from afg_datasets.publish.card import render_card

    text = str(render_card(corpus, corpus.stats(), repo_id, published=True))
    try:
        card = DatasetCard(text)
    except Exception as err:  # noqa: BLE001 - YAML and card parse errors come in many types
        raise PushError(
            f"the card rendered for {repo_id}: not parseable ({first_line(err)})"
        ) from None
    _with_metadata(card, f"the card rendered for {repo_id}", corpus.root)
    return text.encode()


def _with_metadata(card: DatasetCard, where: str, root: Path) -> DatasetCard:
    """`card` if its metadata holds what the Hub needs (REQUIRED_METADATA)."""
    data = card.data.to_dict()
    missing = [key for key in REQUIRED_METADATA if not data.get(key)]
    if missing:
        raise PushError(f"{where}: metadata lacks {missing}; run `afg card {root}`")
    return card


def push(
    corpus: Corpus,
    repo_id: str,
    private: bool = False,
    revision: str | None = None,
    dry_run: bool = False,
    timeout: float = TIMEOUT_SECONDS,
    commit_files: int | None = None,
) -> PushPlan:
    """Verify, then create the dataset repo if needed and upload the corpus folder: in one
    commit, or in resumable commits of `commit_files` (default: COMMIT_FILES above LARGE_FILES
    files or LARGE_BYTES bytes). The last commit (with the manifest) deletes what another
    build left under the corpus's own names (`repo_changes`), so the repo then reads as the
    corpus. Every request gives up after `timeout` seconds without progress and is retried
    (RETRIES)."""
    hub_repo_id(repo_id)
    hub_revision(revision)
    if commit_files is not None and commit_files < 1:
        raise PushError(f"--commit-files must be at least 1, got {commit_files}")
    corpus.verify()
    validate_card(corpus.root)
    card = published_card(corpus, repo_id)  # checked before any request, dry runs too
    plan = upload_plan(corpus)
    if dry_run and constants.HF_HUB_OFFLINE:
        return PushPlan(plan, unlisted="HF_HUB_OFFLINE=1")
    large = len(plan) > LARGE_FILES or sum(p.bytes for p in plan) > LARGE_BYTES
    if commit_files is None and large:
        commit_files = COMMIT_FILES
    with hub_timeouts(timeout):
        api = HfApi()
        if not dry_run:  # a new branch starts from main's files: listed after it exists
            ensure_repo(api, repo_id, "dataset", private, revision)
        try:
            held = remote_files(api, repo_id, revision)
            if dry_run and revision and not held:  # a branch not made yet starts from main
                held = remote_files(api, repo_id, None)
        except PushError as err:
            if not dry_run:
                raise
            return PushPlan(plan, unlisted=str(err))
        changes = repo_changes(list(held), plan)
        if not dry_run:
            _upload(api, corpus, repo_id, revision, changes, commit_files, held, card)
    return changes


def push_recognizer(
    root: str | Path,
    repo_id: str,
    private: bool = False,
    revision: str | None = None,
    dry_run: bool = False,
    timeout: float = TIMEOUT_SECONDS,
) -> PushPlan:
    """Upload a saved recognizer (`Recognizer.save`) to a model repo: exactly its known
    files, after checking they are all there and the model card parses."""
    root = Path(root)
    hub_repo_id(repo_id)
    hub_revision(revision)
    for name in RECOGNIZER_FILES:
        why = regular_file(root, name)
        if why:
            raise PushError(f"{root / name}: {why}; is {root} a saved recognizer?")
    try:
        ModelCard.load(root / "README.md")
    except Exception as err:  # noqa: BLE001 - YAML and card parse errors come in many types
        raise PushError(f"{root / 'README.md'}: not a parseable model card ({err})") from None
    extras = [name for name in RECOGNIZER_OPTIONAL if not regular_file(root, name)]
    names = [*RECOGNIZER_FILES, *extras]
    plan = [UploadFile(name, (root / name).stat().st_size) for name in names]
    if not dry_run:
        with hub_timeouts(timeout):
            upload_files(root, repo_id, "model", names, private, revision)
    return PushPlan(plan)


def _upload(
    api: HfApi,
    corpus: Corpus,
    repo_id: str,
    revision: str | None,
    changes: PushPlan,
    commit_files: int | None,
    held: dict[str, Any],
    card: bytes,
) -> None:
    """The corpus's files, `card` (rendered for `repo_id`, checked), its croissant.json with
    URLs into the repo; the stale files deleted in the last commit."""
    from afg_datasets.publish.croissant import croissant_document

    root = corpus.root
    base_url = f"{constants.ENDPOINT}/datasets/{repo_id}/resolve/{revision or 'main'}"
    croissant = json.dumps(croissant_document(corpus, base_url), indent=2) + "\n"
    contents = {CARD_FILE: card, CROISSANT_FILE: croissant.encode()}
    paths = sorted({item.path for item in changes.upload} | set(contents))
    data = [item for item in changes.upload if item.path not in PUBLISHED_EXTRAS]
    sha256 = {e["path"]: e["sha256"] for e in corpus.files()}
    if commit_files is None:  # a data file the repo holds with these bytes is not sent again
        same = {item.path for item in data if holds(held.get(item.path), root, item, sha256)}
        operations = additions(root, [p for p in paths if p not in same], contents, changes.delete)
        commit(api, repo_id, operations, f"Upload {root.name}", revision)
        return
    extras = [path for path in paths if path in PUBLISHED_EXTRAS]
    retire = (MANIFEST_FILE, CARD_FILE, CROISSANT_FILE)  # gone while the data changes
    upload_in_commits(
        root,
        repo_id,
        data,
        extras,
        sha256,
        contents,
        revision,
        commit_files,
        changes.delete,
        held,
        retire,
    )
