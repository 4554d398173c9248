"""`afg push`: publish a verified corpus to the Hugging Face Hub through huggingface_hub.

The token comes from HF_TOKEN or the saved login and is never printed or logged; HF_ENDPOINT is
honoured by huggingface_hub itself.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tenacity
from huggingface_hub import (
    CommitOperationAdd,
    DatasetCard,
    HfApi,
    ModelCard,
    constants,
    get_session,
)
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.hf_api import RepoFile

from afg_datasets.corpus.verify import require_intact
from afg_datasets.errors import AFGError, first_line
from afg_datasets.layout import (
    CARD_FILE,
    CROISSANT_FILE,
    PUBLISHED_EXTRAS,
    RECOGNIZER_FILES,
    RECOGNIZER_OPTIONAL,
    STATS_FILE,
    read_json,
    regular_file,
)

log = logging.getLogger(__name__)

# A corpus with more files or bytes than these is pushed in commits of at most COMMIT_FILES
# files / COMMIT_BYTES bytes, data first and the card, croissant.json and manifest last; a push
# that is killed or cut off resumes when re-run, skipping files the repo already holds with the
# same content. (huggingface_hub 2.x resumes only through Xet storage: `upload_large_folder` is
# gone and `upload_folder` falls back to one commit without it, so the chunking is ours; each
# commit still goes through its `create_commit`, LFS files uploaded by its worker threads.)
LARGE_FILES = 1_000
LARGE_BYTES = 2**30
COMMIT_FILES = 100
COMMIT_BYTES = 512 * 2**20
COMMIT_THREADS = 8
REQUIRED_METADATA = ("pretty_name", "license", "task_categories", "tags", "configs", "dataset_info")
RETRIES = 3
BACKOFF_SECONDS = 2.0  # waits 2 s, then 4 s (tenacity's exponential wait)
TIMEOUT_SECONDS = 60.0  # connect, read, write and pool timeout of every Hub request


class PushError(AFGError):
    """The corpus cannot be published as it is."""


@dataclass(frozen=True)
class UploadFile:
    path: str
    bytes: int


def upload_plan(root: Path, manifest: dict) -> list[UploadFile]:
    """What `afg push` uploads, sorted, with sizes: exactly the manifest's files (verified
    before), plus the card, manifest, stats and derived figures by their fixed names
    (`layout.PUBLISHED_EXTRAS`) where present. Nothing by glob, never a symlink."""
    paths = [e["path"] for e in manifest["files"]]
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
    data = card.data.to_dict()
    missing = [key for key in REQUIRED_METADATA if not data.get(key)]
    if missing:
        raise PushError(f"{path}: metadata lacks {missing}; run `afg card {root}`")
    return card


def push(
    root: str | Path,
    repo_id: str,
    private: bool = False,
    revision: str | None = None,
    dry_run: bool = False,
    timeout: float = TIMEOUT_SECONDS,
    commit_files: int | None = None,
) -> list[UploadFile]:
    """Verify, then create the dataset repo if needed and upload the corpus folder: in one
    commit, or in resumable commits of `commit_files` (default: COMMIT_FILES above LARGE_FILES
    files or LARGE_BYTES bytes). Every request gives up after `timeout` seconds without
    progress and is retried (RETRIES)."""
    root = Path(root)
    _check_repo_id(repo_id)
    if commit_files is not None and commit_files < 1:
        raise PushError(f"--commit-files must be at least 1, got {commit_files}")
    manifest = require_intact(root)
    validate_card(root)
    plan = upload_plan(root, manifest)
    if dry_run:
        return plan
    large = len(plan) > LARGE_FILES or sum(p.bytes for p in plan) > LARGE_BYTES
    if commit_files is None and large:
        commit_files = COMMIT_FILES
    with hub_timeouts(timeout):
        _upload(root, manifest, repo_id, private, revision, plan, commit_files)
    return plan


def push_recognizer(
    root: str | Path,
    repo_id: str,
    private: bool = False,
    revision: str | None = None,
    dry_run: bool = False,
    timeout: float = TIMEOUT_SECONDS,
) -> list[UploadFile]:
    """Upload a saved recognizer (`Recognizer.save`) to a model repo: exactly its known
    files, after checking they are all there and the model card parses."""
    root = Path(root)
    _check_repo_id(repo_id)
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
    return plan


def _check_repo_id(repo_id: str) -> None:
    if repo_id.count("/") != 1:
        raise PushError(f"--repo-id must look like NAMESPACE/NAME, got {repo_id!r}")


def _upload(
    root: Path,
    manifest: dict,
    repo_id: str,
    private: bool,
    revision: str | None,
    plan: list[UploadFile],
    commit_files: int | None,
) -> None:
    """The corpus's files; its card re-rendered so its snippets load `repo_id`, its
    croissant.json with URLs into the repo."""
    from afg_datasets.card import render_card
    from afg_datasets.croissant import croissant_document

    stats = read_json(root / STATS_FILE, shape="stats")
    card = str(render_card(manifest, stats, repo_id, root, published=True)).encode()
    base_url = f"{constants.ENDPOINT}/datasets/{repo_id}/resolve/{revision or 'main'}"
    croissant = json.dumps(croissant_document(manifest, base_url), indent=2) + "\n"
    contents = {CARD_FILE: card, CROISSANT_FILE: croissant.encode()}
    paths = sorted({item.path for item in plan} | set(contents))
    if commit_files is None:
        upload_files(root, repo_id, "dataset", paths, private, revision, contents)
        return
    data = [item for item in plan if item.path not in PUBLISHED_EXTRAS]
    extras = [p for p in paths if p in PUBLISHED_EXTRAS]
    sha256 = {e["path"]: e["sha256"] for e in manifest["files"]}
    upload_in_commits(
        root, repo_id, data, extras, sha256, contents, private, revision, commit_files
    )


def upload_in_commits(
    root: Path,
    repo_id: str,
    data: list[UploadFile],
    extras: list[str],
    sha256: dict[str, str],
    contents: dict[str, bytes],
    private: bool,
    revision: str | None,
    commit_files: int,
) -> int:
    """`data` in commits of at most `commit_files` files and COMMIT_BYTES bytes, skipping
    those the repo already holds with the same content (`sha256` of each), then `extras` in
    one last commit. Returns the number of data files uploaded."""
    api = HfApi()
    _ensure_repo(api, repo_id, "dataset", private, revision)
    held = _remote_files(api, repo_id, revision)
    todo = [item for item in data if not _held(held.get(item.path), root, item, sha256)]
    chunks = _chunks(todo, commit_files)
    for number, chunk in enumerate(chunks, 1):
        operations = [CommitOperationAdd(item.path, str(root / item.path)) for item in chunk]
        _commit(api, repo_id, operations, f"data, part {number}/{len(chunks)}", revision)
        log.info("pushed part %d/%d (%d files)", number, len(chunks), len(chunk))
    operations = [
        CommitOperationAdd(path, contents[path] if path in contents else str(root / path))
        for path in extras
    ]
    _commit(api, repo_id, operations, "card, croissant.json and manifest", revision)
    return len(todo)


def _chunks(items: list[UploadFile], most: int) -> list[list[UploadFile]]:
    chunks: list[list[UploadFile]] = []
    size = 0
    for item in items:
        if not chunks or len(chunks[-1]) >= most or size + item.bytes > COMMIT_BYTES:
            chunks.append([])
            size = 0
        chunks[-1].append(item)
        size += item.bytes
    return chunks


def _remote_files(api: HfApi, repo_id: str, revision: str | None) -> dict[str, Any]:
    """Path -> RepoFile of what the repo holds at `revision` (empty for a new repo)."""

    def listing() -> list:
        try:
            tree = api.list_repo_tree(
                repo_id, repo_type="dataset", revision=revision, recursive=True
            )
            return list(tree)
        except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError):
            return []

    return {e.path: e for e in _with_retries(listing) if isinstance(e, RepoFile)}


def _held(remote: Any, root: Path, item: UploadFile, sha256: dict[str, str]) -> bool:
    """Whether the repo's file is this one: its LFS sha256, or its git blob id."""
    if remote is None or remote.size != item.bytes:
        return False
    if remote.lfs is not None:
        return remote.lfs.sha256 == sha256.get(item.path)
    blob = hashlib.sha1(f"blob {item.bytes}\0".encode())  # noqa: S324 - git's object id
    blob.update((root / item.path).read_bytes())
    return remote.blob_id == blob.hexdigest()


def upload_files(
    root: Path,
    repo_id: str,
    repo_type: str,
    paths: list[str],
    private: bool = False,
    revision: str | None = None,
    contents: dict[str, bytes] | None = None,
) -> None:
    """Create the repo (and branch) if needed and upload exactly `paths` of `root` in one
    commit (`contents` replaces a file's bytes), each Hub request retried on transient
    errors."""
    api = HfApi()
    _ensure_repo(api, repo_id, repo_type, private, revision)
    contents = contents or {}
    operations = [
        CommitOperationAdd(path, contents[path] if path in contents else str(root / path))
        for path in paths  # exact names: nothing else goes
    ]
    _commit(api, repo_id, operations, f"Upload {root.name}", revision, repo_type)


def _ensure_repo(api: HfApi, repo_id: str, repo_type: str, private: bool, revision) -> None:
    _with_retries(
        lambda: api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
    )
    if revision:
        _with_retries(
            lambda: api.create_branch(repo_id, branch=revision, repo_type=repo_type, exist_ok=True)
        )


def _commit(api, repo_id, operations, message, revision, repo_type="dataset") -> None:
    _with_retries(
        lambda: api.create_commit(
            repo_id,
            operations,
            commit_message=f"{message} (afg-datasets)",
            repo_type=repo_type,
            revision=revision,
            num_threads=COMMIT_THREADS,
        )
    )


@contextlib.contextmanager
def hub_timeouts(seconds: float) -> Iterator[None]:
    """huggingface_hub's own shared HTTP client, with timeouts while inside (its default has
    none, so a server that accepts and never answers would hang a push forever)."""
    session = get_session()
    previous = session.timeout
    session.timeout = seconds
    try:
        yield
    finally:
        session.timeout = previous


def _network_errors() -> tuple[type[BaseException], ...]:
    """Connection-level errors (refused, reset, timed out, protocol) of the HTTP library
    huggingface_hub uses (httpx, or its httpx2 fork), plus the builtin ones."""
    library = importlib.import_module(type(get_session()).__module__.split(".")[0])
    return (ConnectionError, TimeoutError, library.TransportError)


def _transient(err: BaseException) -> bool:
    """5xx, 429 and connection-level errors are worth another try; other errors are not."""
    if isinstance(err, HfHubHTTPError):
        status = getattr(getattr(err, "response", None), "status_code", None)
        return status is None or status >= 500 or status == 429
    return isinstance(err, _network_errors())


def _with_retries(call):
    """`call` with tenacity's exponential backoff on transient Hub errors (re-running an
    upload resumes it); the last error becomes one PushError line, token-free."""
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(RETRIES),
        wait=tenacity.wait_exponential(multiplier=BACKOFF_SECONDS),
        retry=tenacity.retry_if_exception(_transient),
        before_sleep=lambda state: log.warning(
            "transient Hub error (attempt %d/%d): %s",
            state.attempt_number,
            RETRIES,
            _scrub(state.outcome.exception()),
        ),
        reraise=True,
    )
    try:
        return retrying(call)
    except (HfHubHTTPError, *_network_errors()) as err:
        raise PushError(f"Hub request failed: {_scrub(err)}") from None


def _scrub(err: Exception) -> str:
    """The error's first line, with any token-like string removed."""
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return " ".join("hf_***" if word.startswith("hf_") else word for word in text.split())
