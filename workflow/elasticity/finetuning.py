"""Steps `align` and `invert`: TRL supervised fine-tuning on the first n examples of a pool.

For one seed, the examples are the first n of a seeded permutation of the pool, so the
subsets are nested across n (the 1,000-example set contains the 500-example set).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from elasticity.io import atomic_path, read_parquet, write_json
from elasticity.models import load_model, load_tokenizer, parameter_count
from elasticity.training import discard, resumable_checkpoint, scratch_dir, trainer_kwargs

log = logging.getLogger(__name__)


def select_examples(pool: str, n: int, seed: int) -> list[str]:
    texts = read_parquet(pool, ["text"])["text"].tolist()
    if n > len(texts):
        raise ValueError(f"{pool}: asked for {n} examples but the pool holds {len(texts)}")
    order = np.random.default_rng(seed).permutation(len(texts))
    return [texts[i] for i in order[:n]]


def finetune(
    model: str,
    pool: str,
    out: str,
    *,
    n: int,
    hparams: dict[str, Any],
    seed: int,
) -> dict[str, Any]:
    """SFT `model` on `n` examples of `pool`; save a from_pretrained directory at `out`."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    texts = select_examples(pool, n, seed)
    tok = load_tokenizer(model)
    net = load_model(model)
    scratch = scratch_dir(out)
    resume = resumable_checkpoint(scratch, dict(model=model, pool=pool, n=n, hparams=hparams,
                                                seed=seed))
    config = SFTConfig(
        max_length=hparams["max_length"],
        num_train_epochs=hparams["epochs"],
        packing=False,
        dataset_text_field="text",
        **trainer_kwargs(hparams, scratch=scratch, seed=seed),
    )
    trainer = SFTTrainer(model=net, args=config, train_dataset=Dataset.from_dict({"text": texts}),
                         processing_class=tok)
    train_tokens = int(sum(len(ids) for ids in trainer.train_dataset["input_ids"]))
    log.info("SFT on %d examples (%d tokens/epoch, %s epochs) of %s", n, train_tokens,
             hparams["epochs"], pool)
    start = time.time()
    result = trainer.train(resume_from_checkpoint=resume)
    metrics = {
        "examples": n,
        "parameters": parameter_count(net),
        "train_tokens": int(train_tokens * hparams["epochs"]),
        "train_loss": round(float(result.training_loss), 4),
        "steps": trainer.state.global_step,
        "wall_seconds": round(time.time() - start, 1),
    }
    log.info("done: %s", metrics)
    with atomic_path(out) as tmp:
        trainer.save_model(str(tmp))
        tok.save_pretrained(tmp)
        write_json(metrics, Path(tmp) / "train_metrics.json")
    discard(scratch)
    return metrics
