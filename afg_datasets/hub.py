"""`afg push`: publish a verified corpus to the Hugging Face Hub through huggingface_hub.

The token comes from HF_TOKEN or the saved login and is never printed or logged; HF_ENDPOINT is
honoured by huggingface_hub itself.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import tenacity
from huggingface_hub import CommitOperationAdd, DatasetCard, HfApi, ModelCard
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.utils import _http as hub_http

from afg_datasets.errors import AFGError
from afg_datasets.layout import (
    CARD_FILE,
    PUBLISHED_EXTRAS,
    RECOGNIZER_FILES,
    STATS_FILE,
    read_json,
)
from afg_datasets.verify import require_intact

log = logging.getLogger(__name__)

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
        path = root / name
        if path.is_symlink() or (path.exists() and not path.is_file()):
            raise PushError(f"{path}: not a regular file; refusing to publish it")
        if path.is_file():
            paths.append(name)
    return [UploadFile(p, (root / p).stat().st_size) for p in sorted(set(paths))]


def validate_card(root: Path) -> DatasetCard:
    """Parse the card with huggingface_hub and check the metadata the Hub needs."""
    path = root / CARD_FILE
    if not path.is_file():
        raise PushError(f"{path}: missing; run `afg card {root}`")
    try:
        card = DatasetCard.load(path)
    except Exception as err:  # noqa: BLE001 - YAML and card parse errors come in many types
        first = (str(err).splitlines() or [type(err).__name__])[0]
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
) -> list[UploadFile]:
    """Verify, then create the dataset repo if needed and upload the corpus folder. Every
    request gives up after `timeout` seconds without progress and is retried (RETRIES)."""
    root = Path(root)
    _check_repo_id(repo_id)
    manifest = require_intact(root)
    validate_card(root)
    plan = upload_plan(root, manifest)
    if dry_run:
        return plan
    with hub_timeouts(timeout):
        _upload(root, manifest, repo_id, private, revision, plan)
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
        path = root / name
        if path.is_symlink() or not path.is_file():
            raise PushError(f"{path}: missing or not a regular file; is {root} a saved recognizer?")
    try:
        ModelCard.load(root / "README.md")
    except Exception as err:  # noqa: BLE001 - YAML and card parse errors come in many types
        raise PushError(f"{root / 'README.md'}: not a parseable model card ({err})") from None
    plan = [UploadFile(name, (root / name).stat().st_size) for name in RECOGNIZER_FILES]
    if not dry_run:
        with hub_timeouts(timeout):
            upload_files(root, repo_id, "model", list(RECOGNIZER_FILES), private, revision)
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
) -> None:
    """The corpus's files; its card re-rendered so its snippets load `repo_id`."""
    from afg_datasets.card import render_card

    stats = read_json(root / STATS_FILE, shape="stats")
    card = str(render_card(manifest, stats, repo_id, root, published=True)).encode()
    paths = [item.path for item in plan]
    upload_files(root, repo_id, "dataset", paths, private, revision, {CARD_FILE: card})


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
    _with_retries(
        lambda: api.create_repo(repo_id, repo_type=repo_type, private=private, exist_ok=True)
    )
    if revision:
        _with_retries(
            lambda: api.create_branch(repo_id, branch=revision, repo_type=repo_type, exist_ok=True)
        )
    contents = contents or {}
    operations = [
        CommitOperationAdd(path, contents[path] if path in contents else str(root / path))
        for path in paths  # exact names: nothing else goes
    ]
    _with_retries(
        lambda: api.create_commit(
            repo_id,
            operations,
            commit_message=f"Upload {root.name} with afg-datasets",
            repo_type=repo_type,
            revision=revision,
        )
    )


@contextlib.contextmanager
def hub_timeouts(seconds: float) -> Iterator[None]:
    """huggingface_hub's own HTTP client, with timeouts (its default has none, so a server
    that accepts and never answers would hang a push forever)."""

    def factory():
        client = hub_http.default_client_factory()
        client.timeout = seconds
        return client

    hub_http.set_client_factory(factory)
    try:
        yield
    finally:
        hub_http.set_client_factory(hub_http.default_client_factory)


def _network_errors() -> tuple[type[BaseException], ...]:
    """Connection-level errors (refused, reset, timed out, protocol) of the HTTP library
    huggingface_hub uses (httpx, or its httpx2 fork), plus the builtin ones."""
    library = importlib.import_module(type(hub_http.get_session()).__module__.split(".")[0])
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
