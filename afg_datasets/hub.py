"""`afg push`: publish a verified corpus to the Hugging Face Hub through huggingface_hub.

The token comes from HF_TOKEN or the saved login and is never printed or logged; HF_ENDPOINT is
honoured by huggingface_hub itself.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from huggingface_hub import DatasetCard, HfApi
from huggingface_hub.errors import HfHubHTTPError
from huggingface_hub.utils import _http as hub_http

from afg_datasets.errors import AFGError
from afg_datasets.layout import CARD_FILE, PUBLISHED_EXTRAS
from afg_datasets.verify import require_intact

log = logging.getLogger(__name__)

REQUIRED_METADATA = ("pretty_name", "license", "task_categories", "tags", "configs", "dataset_info")
RETRIES = 3
BACKOFF_SECONDS = 2.0  # doubled after each failed attempt
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
    if repo_id.count("/") != 1:
        raise PushError(f"--repo-id must look like NAMESPACE/NAME, got {repo_id!r}")
    manifest = require_intact(root)
    validate_card(root)
    plan = upload_plan(root, manifest)
    if dry_run:
        return plan
    with hub_timeouts(timeout):
        _upload(root, repo_id, private, revision, plan)
    return plan


def _upload(
    root: Path, repo_id: str, private: bool, revision: str | None, plan: list[UploadFile]
) -> None:
    api = HfApi()
    _with_retries(
        lambda: api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    )
    if revision:
        _with_retries(
            lambda: api.create_branch(repo_id, branch=revision, repo_type="dataset", exist_ok=True)
        )
    _with_retries(
        lambda: api.upload_folder(
            folder_path=str(root),
            repo_id=repo_id,
            repo_type="dataset",
            revision=revision,
            allow_patterns=[item.path for item in plan],  # exact names: nothing else goes
            commit_message=f"Upload AFG corpus {root.name}",
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


def _with_retries(call):
    """Retry transient Hub errors (5xx, 429, connection); re-running an upload resumes it."""
    attempt = 1
    network = _network_errors()
    while True:
        try:
            return call()
        except (HfHubHTTPError, *network) as err:
            status = getattr(getattr(err, "response", None), "status_code", None)
            transient = status is None or status >= 500 or status == 429
            if not transient or attempt == RETRIES:
                raise PushError(f"Hub request failed: {_scrub(err)}") from None
            log.warning("transient Hub error (attempt %d/%d): %s", attempt, RETRIES, _scrub(err))
            time.sleep(BACKOFF_SECONDS * 2 ** (attempt - 1))
            attempt += 1


def _scrub(err: Exception) -> str:
    """The error's first line, with any token-like string removed."""
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return " ".join("hf_***" if word.startswith("hf_") else word for word in text.split())
