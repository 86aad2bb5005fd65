"""What pretraining and fine-tuning share: trainer arguments, resumable scratch dirs, metrics."""

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


def trainer_kwargs(hparams: dict[str, Any], *, scratch: Path, seed: int) -> dict[str, Any]:
    """Keyword arguments shared by TrainingArguments and TRL's SFTConfig.

    `hparams` is a validated config section (see workflow/schemas/config.schema.yaml).
    """
    return dict(
        output_dir=str(scratch),
        learning_rate=hparams["learning_rate"],
        lr_scheduler_type=hparams["lr_scheduler"],
        warmup_steps=hparams["warmup_steps"],
        weight_decay=hparams["weight_decay"],
        adam_beta1=hparams["adam_beta1"],
        adam_beta2=hparams["adam_beta2"],
        per_device_train_batch_size=hparams["batch_size"],
        seed=seed,
        use_cpu=hparams["device"] == "cpu",
        bf16=hparams["bf16"],
        activation_checkpointing=False,
        optim="adamw_torch",
        save_strategy="steps",
        save_steps=hparams["checkpoint_every_steps"],
        save_total_limit=1,
        logging_steps=hparams["log_every_steps"],
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )


def discard(scratch: Path) -> None:
    shutil.rmtree(scratch, ignore_errors=True)
