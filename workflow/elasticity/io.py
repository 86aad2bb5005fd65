"""Atomic writes and checked reads: a killed job never leaves a file that looks finished."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from elasticity.provenance import code_version


class DamagedOutputError(RuntimeError):
    """An output of an earlier job that cannot be read: names it and how to rebuild it."""

    def __init__(self, path: str | os.PathLike, err: BaseException):
        super().__init__(
            f"{path} is damaged and cannot be read ({type(err).__name__}: {err}). Rebuild it "
            f"with `snakemake --force {path}` (plus the options of your run), then rerun.")


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling of `path` (file or directory); rename it into place on success."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{final.name}.tmp-{os.getpid()}")
    _remove(tmp)
    try:
        yield tmp
        _remove(final)
        os.replace(tmp, final)
    finally:
        _remove(tmp)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def write_parquet(frame: pd.DataFrame, path: str | os.PathLike, params: dict[str, Any]) -> None:
    """Write `frame` atomically; the file's metadata records the params and code version."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[b"elasticity.params"] = json.dumps(params, sort_keys=True, default=str).encode()
    meta[b"elasticity.code_version"] = code_version().encode()
    table = table.replace_schema_metadata(meta)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_parquet(path: str | os.PathLike, columns: Sequence[str]) -> pd.DataFrame:
    """Read a parquet file and fail with the file and column names if a column is missing."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        frame = pd.read_parquet(path)
    except (OSError, pa.ArrowException) as err:
        raise DamagedOutputError(path, err) from err
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(
            f"{path}: missing column(s) {missing}; found {list(frame.columns)}"
        )
    return frame


def parquet_params(path: str | os.PathLike) -> dict[str, Any]:
    """The params a parquet file was written with (see `write_parquet`)."""
    meta = pq.read_schema(path).metadata or {}
    return json.loads(meta.get(b"elasticity.params", b"{}"))


def write_json(obj: Any, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """A JSON file a step wrote; unreadable content fails naming the file."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise DamagedOutputError(path, err) from err
