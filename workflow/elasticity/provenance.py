"""Where a result came from: hashes of config slices and the code version."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import subprocess
from functools import cache
from pathlib import Path
from typing import Any


def config_hash(obj: Any) -> str:
    """A short, order-independent hash of a JSON-serialisable config slice."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@cache
def code_version() -> str:
    """Package version plus the git commit of the checkout it runs from (with '+dirty')."""
    # Read from the installed metadata, not the package's __init__: a step importing it would
    # make a version bump change every step's code fingerprint.
    version = importlib.metadata.version("elasticity")
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=12", "HEAD"],
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return version
    return f"{version}+g{commit}{'.dirty' if dirty else ''}"
