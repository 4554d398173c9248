"""The Hub client of `afg push`: commits through huggingface_hub's `create_commit`, retried
on transient errors with timeouts on every request, and resumable chunked commits.

The token comes from HF_TOKEN or the saved login and is never printed or logged; HF_ENDPOINT is
honoured by huggingface_hub itself. (huggingface_hub 2.x resumes only through Xet storage:
`upload_large_folder` is gone and `upload_folder` falls back to one commit without it, so the
chunking is ours; each commit still goes through its `create_commit`, LFS files uploaded by its
worker threads.)
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tenacity
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi, get_session
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.hf_api import RepoFile

from afg_datasets.documents import open_regular
from afg_datasets.errors import AFGError

log = logging.getLogger(__name__)

COMMIT_BYTES = 512 * 2**20
COMMIT_THREADS = 8
RETRIES = 3
BACKOFF_SECONDS = 2.0  # waits 2 s, then 4 s (tenacity's exponential wait)


class PushError(AFGError):
    """The corpus cannot be published as it is."""


@dataclass(frozen=True)
class UploadFile:
    path: str
    bytes: int


def upload_in_commits(
    root: Path,
    repo_id: str,
    data: list[UploadFile],
    extras: list[str],
    sha256: dict[str, str],
    contents: dict[str, bytes],
    revision: str | None,
    commit_files: int,
    delete: list[str] | None = None,
    held: dict[str, Any] | None = None,
    retire: tuple[str, ...] = (),
) -> int:
    """`data` in commits of at most `commit_files` files and COMMIT_BYTES bytes, skipping
    those the repo already holds (`held`, else listed here) with the same content (`sha256`
    of each), then `extras` in one last commit that also deletes `delete`. The first data
    commit deletes the repo's `retire` files (its manifest and card), so no commit shows an
    old manifest over new files. Returns the number of data files uploaded."""
    api = HfApi()
    held = remote_files(api, repo_id, revision) if held is None else held
    todo = [item for item in data if not holds(held.get(item.path), root, item, sha256)]
    chunks = _chunks(todo, commit_files)
    retired = [path for path in retire if path in held]
    for number, chunk in enumerate(chunks, 1):
        gone = retired if number == 1 else []
        operations = additions(root, [item.path for item in chunk], {}, gone)
        commit(api, repo_id, operations, f"data, part {number}/{len(chunks)}", revision)
        log.info("pushed part %d/%d (%d files)", number, len(chunks), len(chunk))
    operations = additions(root, extras, contents, delete)
    commit(api, repo_id, operations, "card, croissant.json and manifest", revision)
    return len(todo)


def additions(
    root: Path, paths: list[str], contents: dict[str, bytes], delete: list[str] | None = None
) -> list:
    """One add per path (exact names: nothing else goes; `contents` replaces a file's bytes),
    then one delete per path of `delete`."""
    adds = [
        CommitOperationAdd(path, contents[path] if path in contents else str(root / path))
        for path in paths
    ]
    return [*adds, *(CommitOperationDelete(path) for path in delete or [])]


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


def remote_files(api: HfApi, repo_id: str, revision: str | None) -> dict[str, Any]:
    """Path -> RepoFile of what the repo holds at `revision` (empty for a new repo)."""

    def listing() -> list:
        try:
            tree = api.list_repo_tree(
                repo_id, repo_type="dataset", revision=revision, recursive=True
            )
            return list(tree)
        except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError):
            return []

    # huggingface_hub retries a GET itself (5 times, backing off): once more here would
    # multiply its waits (79 s to say the Hub cannot be reached)
    return {e.path: e for e in _with_retries(listing, 1) if isinstance(e, RepoFile)}


def holds(remote: Any, root: Path, item: UploadFile, sha256: dict[str, str]) -> bool:
    """Whether the repo's file is this one: its LFS sha256, or its git blob id."""
    if remote is None or remote.size != item.bytes:
        return False
    if remote.lfs is not None:
        return remote.lfs.sha256 == sha256.get(item.path)
    blob = hashlib.sha1(f"blob {item.bytes}\0".encode())  # noqa: S324 - git's object id
    with open_regular(root / item.path, PushError) as handle:  # a verified corpus file
        while chunk := handle.read(2**20):
            blob.update(chunk)
    return remote.blob_id == blob.hexdigest()


def upload_files(
    root: Path,
    repo_id: str,
    repo_type: str,
    paths: list[str],
    private: bool = False,
    revision: str | None = None,
) -> None:
    """Create the repo (and branch) if needed and upload exactly `paths` of `root` in one
    commit, each Hub request retried on transient errors."""
    api = HfApi()
    ensure_repo(api, repo_id, repo_type, private, revision)
    operations = additions(root, paths, {})
    commit(api, repo_id, operations, f"Upload {root.name}", revision, repo_type)


def ensure_repo(api: HfApi, repo_id: str, repo_type: str, private: bool, revision) -> None:
    _with_retries(
        lambda: api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
    )
    if revision:
        _with_retries(
            lambda: api.create_branch(repo_id, branch=revision, repo_type=repo_type, exist_ok=True)
        )


def commit(api, repo_id, operations, message, revision, repo_type="dataset") -> None:
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


def _with_retries(call, attempts: int = RETRIES):
    """`call` with tenacity's exponential backoff on transient Hub errors (re-running an
    upload resumes it); the last error becomes one PushError line, token-free."""
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(attempts),
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
    except (ValueError, KeyError, TypeError) as err:  # a reply huggingface_hub cannot parse
        raise PushError(
            f"the Hub's reply could not be read ({_scrub(err)}); what was sent may have "
            "landed: run the same command again, it skips what the repo already holds"
        ) from None


def _scrub(err: Exception) -> str:
    """The error's first line, with any token-like string removed."""
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return " ".join("hf_***" if word.startswith("hf_") else word for word in text.split())
