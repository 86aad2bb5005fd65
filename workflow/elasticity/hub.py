"""The hub cache: `prefetch` downloads on the login node; every other step reads offline.

One huggingface_hub cache directory (config key hub.cache) holds every model, dataset and scorer
a config needs, in huggingface_hub's own layout (`models--org--name/snapshots/<commit>/...`,
`refs/<branch>` -> commit). `prefetch` is the only code that talks to the Hub; `local_snapshot`
is how every other step finds a snapshot, without the network.
"""

from __future__ import annotations

import fnmatch
import hashlib
import logging
import os
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx2
import huggingface_hub
from huggingface_hub import HfApi, constants, get_cached_repo_tree, snapshot_download
from huggingface_hub.errors import (
    CachedRepoTreeNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RepositoryNotFoundError,
    RevisionNotFoundError,
    RevisionResolutionError,
)
from huggingface_hub.file_download import repo_folder_name
from huggingface_hub.utils import filter_repo_objects

from elasticity.io import write_json

log = logging.getLogger(__name__)

COMMIT = re.compile(r"[0-9a-f]{40}")
FETCH_COMMAND = ("`snakemake prefetch --configfile <your config>` "
                 "(or `make prefetch CONFIG=<your config>`)")
# A model repo often holds the same weights in several formats (Llama-2: safetensors and .bin;
# Gemma: also a 10 GB GGUF). transformers loads safetensors first, so when they exist the others
# are skipped; otherwise the PyTorch .bin files are what it loads, and only the other
# frameworks' formats are skipped.
OTHER_FRAMEWORKS = ["*.msgpack", "*.h5", "*.ckpt", "*.onnx", "*.onnx_data", "*.tflite", "*.ot",
                    "*.gguf", "*.mlmodel"]
BESIDE_SAFETENSORS = ["*.bin", "*.pt", "*.pth", *OTHER_FRAMEWORKS]
# What makes a snapshot usable: a transformers model dir, or a dataset with data files.
MODEL_WEIGHTS = ("*.safetensors", "pytorch_model*.bin")
DATA_SUFFIXES = (".parquet", ".arrow", ".jsonl", ".json", ".csv", ".tsv", ".txt")
COMPRESSION_SUFFIXES = (".gz", ".xz", ".zst", ".bz2")


class MissingFromHubCache(FileNotFoundError):
    """A hub id@revision that is not (completely) in the cache: names it and how to fetch it."""


def skipped_patterns(files: list[str], repo_type: str) -> list[str]:
    """The file patterns of a repo that are not downloaded (see OTHER_FRAMEWORKS)."""
    if repo_type != "model":
        return []
    if any(f.endswith(".safetensors") for f in files):
        return BESIDE_SAFETENSORS
    return OTHER_FRAMEWORKS


def local_snapshot(repo_id: str, revision: str, cache: str, repo_type: str = "model") -> Path:
    """The snapshot directory of repo_id@revision in the cache, without the network.

    A 40-hex revision is the snapshot's commit; a branch or tag resolves through refs/, as the
    prefetch recorded it. Raises MissingFromHubCache (a FileNotFoundError) naming the id,
    revision, cache and the command that fetches it. The path is absolute (the cache may be
    given relative to the working directory; readers resolve the snapshot's links)."""
    repo = Path(cache).absolute() / repo_folder_name(repo_id=repo_id, repo_type=repo_type)
    what = f"hub {repo_type} {repo_id} at revision {revision}"
    if COMMIT.fullmatch(revision):
        commit = revision
    else:
        ref = repo / "refs" / revision
        if not ref.is_file():
            raise _not_cached(what, cache, f"{ref} does not exist")
        commit = ref.read_text().strip()
    snapshot = repo / "snapshots" / commit
    if not snapshot.is_dir():
        raise _not_cached(what, cache, f"{snapshot} does not exist")
    missing = _missing_files(repo_id, commit, cache, repo_type, snapshot)
    if missing:
        raise _not_cached(what, cache, f"its snapshot {snapshot} lacks {len(missing)} file(s) "
                                       f"({', '.join(missing[:3])}): the prefetch was interrupted")
    return snapshot


def go_offline() -> None:
    """Make this process refuse every hub request: a compute job reads the cache only, so a
    missing file fails at once instead of downloading on a node that may have no network. The
    environment covers libraries imported later; the flags of those already imported (a job
    forked from the runner's preloaded server) are set as well."""
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ[name] = "1"
    constants.HF_HUB_OFFLINE = True
    datasets_config = sys.modules.get("datasets.config")
    if datasets_config is not None:
        datasets_config.HF_HUB_OFFLINE = True
        datasets_config.HF_DATASETS_OFFLINE = True


def _not_cached(what: str, cache: str, why: str) -> MissingFromHubCache:
    return MissingFromHubCache(
        f"{what} is not in the hub cache {cache} ({why}). Compute jobs do not download: fetch it "
        f"first, where the Hub is reachable (a cluster's login node), with {FETCH_COMMAND}, "
        "then rerun.")


def _missing_files(repo_id: str, commit: str, cache: str, repo_type: str,
                   snapshot: Path) -> list[str] | None:
    """The files of the commit's listing (as prefetch filters it) that the snapshot lacks;
    None when the cache holds no listing of the commit, so completeness cannot be told."""
    try:
        tree = get_cached_repo_tree(repo_id, repo_type=repo_type, revision=commit,
                                    cache_dir=cache)
    except CachedRepoTreeNotFoundError:
        return None
    paths = [f.path for f in tree]
    wanted = filter_repo_objects(paths, ignore_patterns=skipped_patterns(paths, repo_type))
    return [p for p in wanted if not (snapshot / p).is_file()]


def prefetch(out: str, *, repo_type: str, repo_id: str, revision: str, cache: str
             ) -> dict[str, Any]:
    """Step `prefetch`: download repo_id@revision into the hub cache, check it is usable, and
    write its manifest to `out`.

    A snapshot already complete in the cache is not fetched again (no network at all), so a
    rerun is instant and works offline; a branch is resolved once, on its first fetch."""
    snapshot = _complete_snapshot(repo_id, revision, cache, repo_type)
    if snapshot is None:
        _download(repo_id, revision, cache, repo_type)
        # What compute jobs will do: find it offline, complete.
        snapshot = local_snapshot(repo_id, revision, cache, repo_type)
    else:
        log.info("%s %s@%s is complete in %s; nothing to download", repo_type, repo_id,
                 revision, snapshot)
    files = sorted(p.relative_to(snapshot).as_posix()
                   for p in snapshot.rglob("*") if p.is_file())
    _check_usable(files, repo_type, f"{repo_type} {repo_id}@{revision} ({snapshot})")
    verify_snapshot(snapshot)
    manifest = {
        "repo_type": repo_type,
        "id": repo_id,
        "revision": revision,
        "commit": snapshot.name,
        "path": str(snapshot.resolve()),
        "files": files,
        "fetched_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "huggingface_hub": huggingface_hub.__version__,
    }
    write_json(manifest, out)
    log.info("%s %s@%s: commit %s, %d files", repo_type, repo_id, revision, snapshot.name,
             len(files))
    return manifest


class DamagedHubFile(ValueError):
    """A file in the hub cache whose content is not what the hub served."""


# A blob's name is the file's ETag: the sha256 of its content for a Git LFS file (weights,
# parquet), the git blob sha1 for a small file (config.json, the README).
_SHA256, _GIT_SHA1 = re.compile(r"[0-9a-f]{64}"), re.compile(r"[0-9a-f]{40}")


def verify_snapshot(snapshot: Path) -> None:
    """Check every file of a snapshot against the hash its blob is named after, so a cached
    download that was cut short, rotted or edited is refused before a job reads it. Raises
    DamagedHubFile naming the file, both hashes and how to fetch it again."""
    for link in sorted(p for p in Path(snapshot).rglob("*") if p.is_file()):
        blob = link.resolve()
        if _SHA256.fullmatch(blob.name):
            digest = hashlib.sha256()
        elif _GIT_SHA1.fullmatch(blob.name):
            digest = hashlib.sha1(b"blob %d\0" % blob.stat().st_size)
        else:
            continue  # not a hub blob (a snapshot written by other means): nothing to check
        with open(blob, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 22), b""):
                digest.update(block)
        if digest.hexdigest() != blob.name:
            raise DamagedHubFile(
                f"{link}: its content hashes to {digest.hexdigest()}, but the hub served "
                f"{blob.name}; the cached download is damaged. Delete {blob} and {link}, then "
                f"fetch it again with `snakemake prefetch --configfile <your config>` (or "
                f"`make prefetch CONFIG=<your config>`) where the hub is reachable.")


def _complete_snapshot(repo_id: str, revision: str, cache: str, repo_type: str) -> Path | None:
    """The snapshot if the cache holds all of it (its listing proves that), else None."""
    try:
        snapshot = local_snapshot(repo_id, revision, cache, repo_type)
    except MissingFromHubCache:
        return None
    if _missing_files(repo_id, snapshot.name, cache, repo_type, snapshot) is None:
        return None
    return snapshot


def _download(repo_id: str, revision: str, cache: str, repo_type: str) -> None:
    what = f"{repo_type} {repo_id}@{revision}"
    api = HfApi()
    try:
        # Resolved once, so the file list and the download are of the same commit; this also
        # records refs/<revision> in the cache for `local_snapshot`.
        resolved = api.resolve_revision(repo_id, repo_type=repo_type, revision=revision,
                                        cache_dir=cache)
        files = api.list_repo_files(repo_id, repo_type=repo_type, revision=resolved.resolved)
        skipped = skipped_patterns(files, repo_type)
        log.info("downloading %s (commit %s) into %s%s", what, resolved.resolved, cache,
                 f", skipping {skipped}" if skipped else "")
        snapshot_download(repo_id, repo_type=repo_type, revision=resolved, cache_dir=cache,
                          ignore_patterns=skipped or None)
    except GatedRepoError as err:
        raise PermissionError(_gated_message(repo_id, repo_type, err)) from err
    except RevisionNotFoundError as err:
        raise ValueError(
            f"{what}: the Hub has no revision {revision!r} of {repo_id}. Set the config's "
            f"revision to a branch, tag or 40-hex commit listed at "
            f"{_page(repo_id, repo_type)}/commits/main.") from err
    except RepositoryNotFoundError as err:
        raise ValueError(
            f"{what}: the Hub has no {repo_type} {repo_id!r} ({_page(repo_id, repo_type)}). "
            "Check the id in the config (spelled as on the Hub, org/name). A private repo "
            "also answers 'not found' to a request without a token that can read it: log in "
            "on the login node with `hf auth login` or set HF_TOKEN.") from err
    except (httpx2.TransportError, OfflineModeIsEnabled, LocalEntryNotFoundError,
            RevisionResolutionError) as err:
        offline = (" HF_HUB_OFFLINE is set in this environment: unset it for the prefetch."
                   if constants.HF_HUB_OFFLINE else "")
        raise ConnectionError(
            f"cannot reach the Hub ({constants.ENDPOINT}) to fetch {what} "
            f"({type(err).__name__}: {err}).{offline} The prefetch must run where the Hub is "
            f"reachable, e.g. the cluster's login node: run {FETCH_COMMAND} there; compute "
            "jobs then read the cache offline.") from err
    except HfHubHTTPError as err:
        raise RuntimeError(f"fetching {what} failed: {err}") from err


def _page(repo_id: str, repo_type: str) -> str:
    return f"https://huggingface.co/{'datasets/' if repo_type == 'dataset' else ''}{repo_id}"


def _gated_message(repo_id: str, repo_type: str, err: Exception) -> str:
    said = str(err).strip().splitlines()
    return (
        f"{repo_type} {repo_id} is gated: the Hub serves its files only to an account that "
        f"accepted its licence. 1) Sign in at {_page(repo_id, repo_type)}, read and accept the "
        "licence (some are granted by hand: wait for the e-mail). 2) On the login node, give "
        "huggingface_hub a token of that account (https://huggingface.co/settings/tokens, "
        "read access): `hf auth login`, or `export HF_TOKEN=<token>`. Then rerun the prefetch. "
        f"(The Hub said: {said[-1] if said else type(err).__name__})"
    )


def _check_usable(files: list[str], repo_type: str, what: str) -> None:
    lacking = []
    if repo_type == "model":
        if "config.json" not in files:
            lacking.append("config.json")
        if not any(fnmatch.fnmatch(f, p) for f in files for p in MODEL_WEIGHTS):
            lacking.append(f"weights ({' or '.join(MODEL_WEIGHTS)})")
    elif not any(_is_data(f) for f in files):
        lacking.append(f"data files ({', '.join('*' + s for s in DATA_SUFFIXES)}, "
                       "maybe compressed)")
    if lacking:
        raise ValueError(
            f"{what} has no {' and no '.join(lacking)}, so the workflow cannot load it; its "
            f"files: {files[:20]}. Check the id and revision in the config.")


def _is_data(path: str) -> bool:
    name = path.lower()
    for suffix in COMPRESSION_SUFFIXES:
        name = name.removesuffix(suffix)
    # dataset_info(s).json describe a dataset; they are not its data.
    return name.endswith(DATA_SUFFIXES) and not name.rsplit("/", 1)[-1].startswith("dataset_info")
