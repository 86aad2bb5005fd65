"""Benchmark: how soon each class of bad config is refused (issue 7).

    python tests/benchmarks/bench_bad_configs.py

For one representative bad config of each config-time class (1-8: the first case of each in
tests/test_bad_input.py), in a fresh working directory: a dry run of the valid smoke config
first, which fills the validation cache (.snakemake/elasticity) as a user's earlier run would
have, then the dry run of the bad config, timed. Prints a table (class, seconds to rejection,
first line of the message) and the target line: every bad config rejected in <= 3 s.
It measures only; nothing is asserted.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# The representative bad configs are the tests' own cases: the two cannot drift apart.
sys.path.insert(0, str(ROOT))

from elasticity import data  # noqa: E402
from tests.test_bad_input import (  # noqa: E402
    CLASSES,
    SDIST_NAME,
    SMOKE_CONFIG,
    SNAKEMAKE,
    SOURCE,
    set_downloads,
    write_override,
)

TARGET_SECONDS = 3.0


def sdist() -> Path:
    """The sdist the tests use (pytest's cache), or a fresh download of it."""
    cached = ROOT / ".pytest_cache" / "d" / "downloads" / SDIST_NAME
    if cached.exists():
        return cached
    path = Path(tempfile.mkdtemp(prefix="elasticity-sdist-")) / SDIST_NAME
    data.fetch_source(SOURCE["package"], SOURCE["version"], SOURCE["sha256"], str(path))
    return path


def dry_run(work: Path, config: Path) -> tuple[subprocess.CompletedProcess, float]:
    cmd = [*SNAKEMAKE, "--directory", str(work), f"--configfile={config}", "-n", "all"]
    start = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True)
    return done, time.monotonic() - start


def first_line(output: str) -> str:
    """The first line of the error message: after the `XError ...:` header, the first problem
    (past ConfigError's `invalid config:`)."""
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if re.match(r"\w+(Error|Exception)\b", line):
            rest = [ln.strip().removeprefix("- ") for ln in lines[i + 1:] if ln.strip()]
            rest = [ln for ln in rest if ln != "invalid config:"]
            return rest[0] if rest else line
    return "(no error message)"


def main() -> int:
    source = sdist()
    base = Path(tempfile.mkdtemp(prefix="elasticity-bad-configs-"))
    rows = []
    try:
        for number, (what, cases) in CLASSES.items():
            name, case = next(iter(cases.items()))
            work = base / f"class{number}" / "work"
            set_downloads(work, source, "genuine")
            warm, warm_seconds = dry_run(work, SMOKE_CONFIG)
            if warm.returncode != 0:
                print(f"the valid warm-up run failed:\n{warm.stderr[-3000:]}")
                return 1
            set_downloads(work, source, case.downloads)
            override = write_override(work.parent / "override.yaml", case)
            done, seconds = dry_run(work, override)
            message = first_line(done.stdout + done.stderr)
            if done.returncode == 0:
                message = "ACCEPTED (exit 0): " + message
            rows.append((number, f"{what} ({name})", warm_seconds, seconds, message))
    finally:
        shutil.rmtree(base, ignore_errors=True)

    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; each bad config "
          f"after a valid dry run in the same fresh directory (warm validation cache)\n")
    names = [f"{number}. {what}" for number, what, *_ in rows]
    width = max(map(len, names))
    print(f"{'class':<{width}} {'warm-up s':>9} {'rejected s':>10}  first line of the message")
    for name, (_, _, warm_seconds, seconds, message) in zip(names, rows, strict=True):
        shown = message if len(message) <= 100 else message[:97] + "..."
        print(f"{name:<{width}} {warm_seconds:>9.1f} {seconds:>10.1f}  {shown}")
    slowest = max(rows, key=lambda row: row[3])
    met = "met" if slowest[3] <= TARGET_SECONDS else "NOT met"
    print(f"\ntarget: every bad config rejected in <= {TARGET_SECONDS:.0f} s: {met} "
          f"(slowest: class {slowest[0]}, {slowest[3]:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
