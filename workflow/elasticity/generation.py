"""Step `generate`: seeded, batched, left-padded sampling on the held-out prompts."""

from __future__ import annotations

import logging
import time
from typing import Any

import pandas as pd

from elasticity.io import read_parquet, write_parquet
from elasticity.models import load_model, load_tokenizer, parameter_count
from elasticity.provenance import code_version

log = logging.getLogger(__name__)

PROMPT_FILE_COLUMNS = ["uid", "prompt"]
# Columns every generations file has besides the cell's coordinates.
GENERATION_COLUMNS = ["uid", "prompt", "response", "model_parameters", "config_hash",
                      "code_version"]


def load_prompts(path: str) -> pd.DataFrame:
    """The prompt set, checked: a non-empty table whose `prompt` column has no empty text."""
    frame = read_parquet(path, PROMPT_FILE_COLUMNS)
    if frame.empty:
        raise ValueError(f"{path}: the prompt set is empty")
    bad = frame["prompt"].isna() | (frame["prompt"].astype(str).str.strip() == "")
    if bad.any():
        rows = frame.index[bad].tolist()[:5]
        raise ValueError(f"{path}: column 'prompt' has {int(bad.sum())} empty value(s), "
                         f"first at row(s) {rows}")
    return frame


def sample(model, tokenizer, prompts: list[str], *, seed: int, batch_size: int,
           sampling: dict[str, Any], device: str = "cpu") -> list[str]:
    import torch

    torch.manual_seed(seed)
    responses: list[str] = []
    for start in range(0, len(prompts), batch_size):
        batch = tokenizer(prompts[start:start + batch_size], return_tensors="pt", padding=True,
                          add_special_tokens=True).to(device)
        with torch.no_grad():
            out = model.generate(
                **batch, do_sample=True, pad_token_id=tokenizer.pad_token_id,
                max_new_tokens=sampling["max_new_tokens"], temperature=sampling["temperature"],
                top_p=sampling["top_p"], top_k=sampling["top_k"],
            )
        new_tokens = out[:, batch["input_ids"].shape[1]:]
        responses.extend(t.strip() for t in
                         tokenizer.batch_decode(new_tokens, skip_special_tokens=True))
        log.info("generated %d/%d", len(responses), len(prompts))
    return responses


def generate(model: str, prompts: str, out: str, *, cell: dict[str, Any],
             sampling: dict[str, Any], batch_size: int, seed: int, config_hash: str,
             device: str = "cpu") -> None:
    frame = load_prompts(prompts)
    tok = load_tokenizer(model, padding_side="left")
    net = load_model(model).to(device).eval()
    start = time.time()
    responses = sample(net, tok, frame["prompt"].tolist(), seed=seed, batch_size=batch_size,
                       sampling=sampling, device=device)
    log.info("%d responses in %.1fs", len(responses), time.time() - start)
    rows = pd.DataFrame({
        **{k: [v] * len(frame) for k, v in cell.items()},
        "uid": frame["uid"],
        "prompt": frame["prompt"],
        "response": responses,
        "model_parameters": parameter_count(net),
        "config_hash": config_hash,
        "code_version": code_version(),
    })
    write_parquet(rows, out, {"cell": cell, "sampling": sampling, "seed": seed, "device": device,
                              "batch_size": batch_size, "model": model, "prompts": prompts})
