"""A corpus in a Hub dataset repo, fetched by what its manifest lists.

The manifest comes first; then exactly its files and the published extras (card, croissant,
stats, figures: `layout.PUBLISHED_EXTRAS`) that the repo holds, each no larger than the manifest
or the listing says, into a plain folder of the AFG cache named by the commit
(`<cache>/hub/<owner>--<name>/<commit>`). The folder appears whole, by one rename, once every
file is there (`files.atomic_directory`), so a cut download is never trusted; re-opening the
same commit downloads nothing. The files are regular files, so `Corpus.verify` checks them
exactly as a local corpus's (sha256 of each). Offline (`HF_HUB_OFFLINE=1`), a revision fetched
before opens from the cache.
"""

from __future__ import annotations

import functools
import shutil
from pathlib import Path
from urllib.parse import quote

from afg_datasets.checks import hub_repo_id, hub_revision
from afg_datasets.documents import read_text
from afg_datasets.errors import CorpusError, first_line
from afg_datasets.files import atomic_directory, atomic_write
from afg_datasets.layout import MANIFEST_FILE, PUBLISHED_EXTRAS, unsafe_path
from afg_datasets.resources import cache_root

EXTRA_BYTES = 64 * 2**20  # a published extra (card, croissant, a figure) larger is not fetched
_HF_METADATA = ".cache"  # what hf_hub_download(local_dir=...) keeps beside the files


def fetch(repo_id: str, revision: str | None = None) -> Path:
    """The local folder of a Hub corpus at `revision` (default: main), fetched if needed."""
    hub_repo_id(repo_id)
    hub_revision(revision)
    home = cache_root() / "hub" / repo_id.replace("/", "--")
    commit, listing = _listing(repo_id, revision, home)
    folder = home / commit
    if not folder.is_dir():  # several processes (DDP ranks, say) may fetch it at once
        where = f"{repo_id}@{commit[:12]}"
        fill = functools.partial(
            _fill, repo_id=repo_id, commit=commit, listing=listing, where=where
        )
        atomic_directory(folder, fill, shared=True)
    ref = _ref(home, revision)
    ref.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(ref, lambda handle: handle.write(commit.encode()), shared=True)
    return folder


def _ref(home: Path, revision: str | None) -> Path:
    """Where the commit a revision named last is kept (a branch name as one file name)."""
    return home / "refs" / quote(revision or "main", safe="")


def _listing(repo_id: str, revision: str | None, home: Path) -> tuple[str, dict[str, int] | None]:
    """The commit `revision` names and the repo's files with their sizes; offline, the commit
    fetched last for that revision (its folder complete) and no listing."""
    from huggingface_hub import HfApi, constants

    if constants.HF_HUB_OFFLINE:
        ref = _ref(home, revision)
        commit = read_text(ref, CorpusError).strip() if ref.is_file() else ""
        if commit and (home / commit).is_dir() and not unsafe_path(home, commit, None):
            return commit, None
        raise CorpusError(
            f"{repo_id!r}@{revision or 'main'}: not fetched before, and HF_HUB_OFFLINE=1 "
            "forbids fetching it now"
        )
    try:
        info = HfApi().dataset_info(repo_id, revision=revision, files_metadata=True)
    except Exception as err:  # noqa: BLE001 - not found, auth and network errors differ by type
        raise CorpusError(
            f"{repo_id!r}@{revision or 'main'}: no such corpus folder, nor a readable Hub "
            f"dataset repo ({first_line(err)})"
        ) from None
    commit = str(info.sha or "")
    if not (commit.isascii() and commit.isalnum()) or len(commit) > 64:
        raise CorpusError(f"{repo_id!r}: the Hub named commit {commit[:80]!r}, not a commit id")
    return commit, {s.rfilename: s.size for s in info.siblings or []}


def _fill(tmp: Path, repo_id: str, commit: str, listing: dict[str, int], where: str) -> None:
    """Download the manifest, then every file it lists and the extras, into `tmp` (a listing
    is there: offline, `_listing` returns only a commit whose folder is complete)."""
    from afg_datasets.corpus.manifest import load_manifest

    if MANIFEST_FILE not in listing:
        raise CorpusError(f"{where}: the repo holds no {MANIFEST_FILE}; not an AFG corpus")
    _download(repo_id, commit, tmp, {MANIFEST_FILE: listing[MANIFEST_FILE]}, where)
    manifest = load_manifest(tmp)  # format and shape checked before anything else comes
    wanted = {}
    for entry in manifest["files"]:
        path, size = entry["path"], entry["bytes"]
        why = unsafe_path(tmp, path)
        if why:
            raise CorpusError(f"{where}: {MANIFEST_FILE} lists {path!r}: {why}")
        if listing.get(path) != size:
            held = "lacks it" if path not in listing else f"holds {listing[path]} bytes"
            raise CorpusError(
                f"{where}: {MANIFEST_FILE} lists {path} ({size} bytes); the repo {held}"
            )
        wanted[path] = size
    for name in PUBLISHED_EXTRAS:
        if name != MANIFEST_FILE and name in listing and listing[name] <= EXTRA_BYTES:
            wanted[name] = listing[name]
    _download(repo_id, commit, tmp, wanted, where)
    shutil.rmtree(tmp / _HF_METADATA, ignore_errors=True)


def _download(repo_id: str, commit: str, tmp: Path, files: dict[str, int], where: str) -> None:
    """`files` (path -> expected bytes) into `tmp` as regular files, one progress bar over
    their bytes; a file of another size than expected is an error naming it."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.utils import (
        are_progress_bars_disabled,
        disable_progress_bars,
        enable_progress_bars,
    )
    from tqdm.auto import tqdm

    was_disabled = are_progress_bars_disabled()
    disable_progress_bars()  # one bar for the corpus, not one per file
    try:
        with tqdm(
            total=sum(files.values()), unit="B", unit_scale=True, desc=f"fetch {repo_id}"
        ) as bar:
            for path, size in sorted(files.items()):
                local = Path(
                    hf_hub_download(
                        repo_id, path, repo_type="dataset", revision=commit, local_dir=tmp
                    )
                )
                got = local.stat().st_size
                if got != size or local.is_symlink():
                    raise CorpusError(f"{where}: {path}: {got} bytes fetched, {size} expected")
                bar.update(size)
    except CorpusError:
        raise
    except Exception as err:  # noqa: BLE001 - network, auth and not-found errors differ by type
        raise CorpusError(f"{where}: fetching failed: {first_line(err)}") from None
    finally:
        if not was_disabled:
            enable_progress_bars()
