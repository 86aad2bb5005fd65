"""Results of slow validation checks, kept in `.snakemake/elasticity/` of the working directory.

The config is validated at every workflow start (and a dry run must stay fast), but some checks
need transformers or TRL, whose import costs seconds: their outcome is kept under a key that
holds everything the outcome depends on (the checked values and the library versions), so a
check runs once per config change and installed version. Only passing checks are kept: a bad
config is checked afresh each time.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import tempfile
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

CACHE = Path(".snakemake") / "elasticity"


@cache
def library_version(library: str) -> str:
    return f"{library}=={importlib.metadata.version(library)}"


def _read(name: str) -> dict[str, Any]:
    try:
        return json.loads((CACHE / name).read_text())
    except (OSError, ValueError):
        return {}


def _write(name: str, data: dict[str, Any]) -> None:
    CACHE.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=CACHE, prefix=f".{name}.")
    with os.fdopen(fd, "w") as fh:
        json.dump(data, fh, sort_keys=True)
    os.replace(tmp, CACHE / name)


def _digest(key: Any) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:20]


def cached_value(name: str, key: Any, compute: Callable[[], Any],
                 valid: Callable[[Any], bool] = lambda value: True) -> Any:
    """`compute()`, or its value from an earlier run with the same key (if `valid`)."""
    store, digest = _read(name), _digest(key)
    if digest not in store or not valid(store[digest]):
        store[digest] = compute()
        _write(name, store)
    return store[digest]


def cached_problems(name: str, key: Any, check: Callable[[], list[str]]) -> list[str]:
    """`check()`'s problems, remembered for the same key."""
    return cached_value(name, key, check, valid=lambda value: isinstance(value, list))
