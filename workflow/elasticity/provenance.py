"""Where a result came from: hashes of config slices, code fingerprints, the code version."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

from elasticity import __version__


def config_hash(obj: Any) -> str:
    """A short, order-independent hash of a JSON-serialisable config slice."""
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def code_fingerprint(*modules: str) -> str:
    """Hash of the source files of the given modules of this package.

    Rules put this in their params: Snakemake's code trigger sees only a rule's own
    block, not the modules it calls, so an edit to a step's module must show up here.
    """
    digest = hashlib.sha256()
    for module in sorted(set(modules)):
        spec = importlib.util.find_spec(module)
        if spec is None or spec.origin is None:
            raise ValueError(f"no source file for module {module!r}")
        digest.update(module.encode())
        digest.update(Path(spec.origin).read_bytes())
    return digest.hexdigest()[:16]


@cache
def code_version() -> str:
    """Package version plus the git commit of the checkout it runs from (with '+dirty')."""
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
        return __version__
    return f"{__version__}+g{commit}{'.dirty' if dirty else ''}"
