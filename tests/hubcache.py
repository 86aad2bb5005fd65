"""Test helper: put files into a huggingface_hub cache exactly as `snapshot_download` leaves them.

The layout (huggingface_hub 2.4.0, see its file_download.py and _tree_cache.py), for
`org/name` of type model (datasets: `datasets--org--name`):

    models--org--name/
      blobs/<etag>                       the file's bytes; etag = git blob sha1, or for a file
                                         stored in Git LFS the sha256 of its content
      snapshots/<commit>/<path>          relative symlink to ../../blobs/<etag> (deeper for
                                         nested paths)
      refs/<revision>                    the commit a branch or tag resolved to (no newline)
      trees/<commit>.json                the commit's file listing, written by snapshot_download

test_hub.py checks this against huggingface_hub's own readers and against what a real
`snapshot_download` from a local Hub server writes.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

COMMIT = re.compile(r"[0-9a-f]{40}")
# Stored in Git LFS on the Hub: the binary types of the Hub's default .gitattributes that the
# tests use. Which files are LFS only decides a blob's name (sha256 instead of git sha1).
LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".msgpack", ".h5", ".onnx", ".gguf",
                ".parquet", ".arrow", ".gz", ".xz", ".zst", ".model")
TREE_FORMAT_VERSION = 1


def repo_folder(repo_id: str, repo_type: str) -> str:
    return "--".join([f"{repo_type}s", *repo_id.split("/")])


def git_blob_sha1(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def is_lfs(path: str) -> bool:
    return path.endswith(LFS_SUFFIXES)


def lfs_pointer(content: bytes) -> bytes:
    """The small text file git keeps in place of an LFS file (its git blob is the tree's oid)."""
    return (f"version https://git-lfs.github.com/spec/v1\n"
            f"oid sha256:{hashlib.sha256(content).hexdigest()}\nsize {len(content)}\n").encode()


def etag(path: str, content: bytes) -> str:
    """What the Hub sends as the file's ETag, and so the name of its blob in the cache."""
    return hashlib.sha256(content).hexdigest() if is_lfs(path) else git_blob_sha1(content)


def tree_entry(path: str, content: bytes) -> dict:
    """The file's entry in trees/<commit>.json."""
    if not is_lfs(path):
        return {"size": len(content), "blob_id": git_blob_sha1(content)}
    return {"size": len(content), "blob_id": git_blob_sha1(lfs_pointer(content)),
            "lfs_sha256": hashlib.sha256(content).hexdigest(), "lfs_size": len(content)}


def read_files(files: dict[str, bytes] | Path) -> dict[str, bytes]:
    """A directory's files (recursively, by posix path) or the mapping itself, sorted by path."""
    if isinstance(files, dict):
        return dict(sorted(files.items()))
    root = Path(files)
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def put_in_cache(cache: Path, repo_id: str, files: dict[str, bytes] | Path, *,
                 repo_type: str = "model", revision: str = "main") -> str:
    """Write `files` as the snapshot of repo_id@revision into the huggingface_hub cache `cache`;
    return the snapshot's commit.

    A `revision` that is a 40-hex commit is the snapshot's commit (no ref is written); otherwise
    the commit is derived from the repo and its files, and refs/<revision> points to it."""
    contents = read_files(files)
    if COMMIT.fullmatch(revision):
        commit = revision
    else:
        listing = json.dumps([repo_type, repo_id, [(p, etag(p, c)) for p, c in contents.items()]])
        commit = hashlib.sha1(listing.encode()).hexdigest()
    repo = Path(cache) / repo_folder(repo_id, repo_type)
    snapshot = repo / "snapshots" / commit
    for path, content in contents.items():
        blob = repo / "blobs" / etag(path, content)
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(content)
        link = snapshot / path
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink():
            link.unlink()
        link.symlink_to(os.path.relpath(blob, link.parent))
    if revision != commit:
        ref = repo / "refs" / revision
        ref.parent.mkdir(parents=True, exist_ok=True)
        ref.write_text(commit)
    tree = repo / "trees" / f"{commit}.json"
    tree.parent.mkdir(parents=True, exist_ok=True)
    tree.write_text(json.dumps({"format_version": TREE_FORMAT_VERSION,
                                "files": {p: tree_entry(p, c) for p, c in contents.items()}},
                               indent=1))
    return commit
