"""What pretraining and fine-tuning share: resumable scratch directories, final checkpoints."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


def scratch_dir(out: str) -> Path:
    """Where a training job keeps its resumable checkpoints; never a declared output.

    A job killed mid-run leaves its checkpoints here (and no `out`), so a rerun resumes.
    """
    out_path = Path(out)
    return out_path.with_name(f".{out_path.name}.partial")


def resumable_checkpoint(scratch: Path, job: dict[str, Any]) -> str | None:
    """The last checkpoint a killed run of this very job left in `scratch`, if any.

    Checkpoints of a run with other arguments (a changed config) are discarded, not resumed;
    so is a checkpoint the kill interrupted while it was being written.
    """
    stamp = scratch / "job.json"
    text = json.dumps(job, sort_keys=True, default=str)
    found = None
    if scratch.is_dir() and stamp.exists() and stamp.read_text() == text:
        found = _last_complete_checkpoint(scratch)
    if found:
        log.info("resuming from %s", found)
    else:
        discard(scratch)
        scratch.mkdir(parents=True)
        stamp.write_text(text)
    return found


def _last_complete_checkpoint(scratch: Path) -> str | None:
    """The newest checkpoint-N whose trainer_state.json (the Trainer writes it last) is whole."""
    steps = sorted((int(p.name.split("-")[1]), p) for p in scratch.glob("checkpoint-*")
                   if p.name.split("-")[1].isdigit())
    for _, path in reversed(steps):
        try:
            json.loads((path / "trainer_state.json").read_text())
            return str(path)
        except (OSError, ValueError):
            log.info("skipping %s: written only in part", path)
            shutil.rmtree(path, ignore_errors=True)
    return None


def final_checkpoint(scratch: Path, step: int) -> Path:
    """The checkpoint the trainer saved at its last step (a job's output is that checkpoint,
    so that a later chain link can continue it)."""
    final = scratch / f"checkpoint-{step}"
    if not (final / "trainer_state.json").exists():
        raise RuntimeError(f"{scratch}: no checkpoint at the final step {step} after training")
    return final


def discard(scratch: Path) -> None:
    shutil.rmtree(scratch, ignore_errors=True)
