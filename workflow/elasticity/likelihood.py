"""Step `likelihood`: what the theory measures, on one model of the grid, without sampling.

Every number is a teacher-forced forward pass over fixed held-out text, so it is deterministic:
no sampling noise and no fluency floor.

- Compression rate (the paper's §3-4): bits per token and bits per byte on held-out samples of
  the pretraining text (`pretrain_eval`), of the positive pool's distribution (`positive_eval`)
  and of the negative pool's (`negative_eval`). Every token after the leading BOS is scored;
  bytes are the UTF-8 bytes those tokens decode to. The two pools' sets are tokenized as the
  margin reads them (prompt, then continuation, words joined by single spaces), so one pass
  serves both metrics.
- Preference margin: the mean log-likelihood per token (nats) of held-out positive
  continuations minus that of negative ones, each conditioned on its own first words, as a
  generation prompt is (the prompt protocol). Positive: the model prefers positive text.
- KL to the base model (θ₀): token-level KL(model ‖ base), exact over the vocabulary at every
  position of the held-out snippets behind the evaluation prompts (teacher-forced on that real
  text), averaged over positions, in nats.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import numpy as np
import pandas as pd

from elasticity.io import read_parquet, write_parquet
from elasticity.models import load_model, load_tokenizer, parameter_count
from elasticity.provenance import code_version

log = logging.getLogger(__name__)

# Metric name prefix: the held-out split it is measured on.
COMPRESSION_SETS = {"pretrain": "pretrain_eval", "positive": "positive_eval",
                    "negative": "negative_eval"}
METRICS = ([f"bits_per_token_{s}" for s in COMPRESSION_SETS]
           + [f"bits_per_byte_{s}" for s in COMPRESSION_SETS]
           + ["loglik_positive", "loglik_negative", "margin", "kl_to_base"])
LIKELIHOOD_COLUMNS = METRICS + ["model_parameters", "config_hash", "code_version"]


def encode(tokenizer, texts: list[str], max_tokens: int,
           prompts: list[str] | None = None) -> list[tuple[list[int], int]]:
    """Each text's token ids (BOS first, at most max_tokens) and the index of its first scored
    token: 1 (all but BOS), or with `prompts` the first token after the prompt.

    The prompt of a text is its first words joined by single spaces (as generation prompts
    are); the continuation is the rest, tokenized after a space, so the boundary falls where a
    generated continuation's would."""
    if prompts is None:
        return [(ids[:max_tokens], 1) for ids in tokenizer(texts)["input_ids"]]
    rests = []
    for text, prompt in zip(texts, prompts, strict=True):
        words, head = text.split(), prompt.split()
        if words[:len(head)] != head or len(words) == len(head):
            raise ValueError(f"prompt {prompt!r} is not a proper prefix of its text {text!r}")
        rests.append(" " + " ".join(words[len(head):]))
    # One call per list: the fast tokenizer encodes a batch in one pass.
    firsts = tokenizer(list(prompts))["input_ids"]
    rest_ids = tokenizer(rests, add_special_tokens=False)["input_ids"]
    out = [((first + rest)[:max_tokens], len(first))
           for first, rest in zip(firsts, rest_ids, strict=True)]
    # A prompt that fills the window leaves nothing to score (the model's trained length).
    kept = [(ids, start) for ids, start in out if start < len(ids)]
    if not kept:
        raise ValueError(f"every prompt fills all {max_tokens} tokens: nothing left to score")
    if len(kept) < len(out):
        log.warning("%d of %d texts left out: their prompt fills all %d tokens",
                    len(out) - len(kept), len(out), max_tokens)
    return kept


def forward(model, sequences: list[tuple[list[int], int]], *, batch_size: int, device: str,
            pad_id: int, reference=None) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per sequence: the log-probability (nats) of every token after the first, and, with a
    reference model, KL(model ‖ reference) of the next-token distributions at the same
    positions. Entry j is token j + 1's: a sequence's scored tokens are [start - 1:]."""
    import torch

    # Batches of similar lengths pad little; results go back in the given order.
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i][0]))
    logprobs: list[np.ndarray] = [np.empty(0)] * len(sequences)
    kls: list[np.ndarray] = [np.empty(0)] * len(sequences) if reference is not None else []
    for start in range(0, len(order), batch_size):
        rows = order[start:start + batch_size]
        batch = [sequences[i] for i in rows]
        width = max(len(ids) for ids, _ in batch)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for row, (tokens, _) in enumerate(batch):
            ids[row, :len(tokens)] = torch.tensor(tokens)
            mask[row, :len(tokens)] = 1
        ids, mask = ids.to(device), mask.to(device)
        with torch.no_grad():
            own = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits.float(), -1)
            ref = None
            if reference is model:
                ref = own
            elif reference is not None:
                ref = torch.log_softmax(
                    reference(input_ids=ids, attention_mask=mask).logits.float(), -1)
        # Position t predicts token t + 1.
        picked = own[:, :-1].gather(-1, ids[:, 1:, None])[..., 0]
        if ref is not None:
            kl = (own.exp() * (own - ref)).sum(-1)[:, :-1]
        for row, (index, (tokens, _)) in enumerate(zip(rows, batch, strict=True)):
            logprobs[index] = picked[row, :len(tokens) - 1].double().cpu().numpy()
            if ref is not None:
                kls[index] = kl[row, :len(tokens) - 1].double().cpu().numpy()
    return logprobs, kls


def compression(logprobs: list[np.ndarray], n_bytes: int) -> tuple[float, float]:
    """Bits per token and bits per byte of a set of scored sequences."""
    bits = -float(sum(lp.sum() for lp in logprobs)) / math.log(2)
    tokens = sum(len(lp) for lp in logprobs)
    return bits / tokens, bits / n_bytes


def likelihood(model: str, base: str, out: str, *, sets: dict[str, str], prompts: str,
               cell: dict[str, Any], max_tokens: int, batch_size: int, device: str,
               config_hash: str) -> dict[str, float]:
    """`sets` maps each COMPRESSION_SETS name to its split file; `prompts` is the prompt split."""
    start = time.time()
    tok = load_tokenizer(model)
    net = load_model(model).to(device).eval()
    row: dict[str, Any] = {}
    for name, path in sorted(sets.items()):
        # The pools' held-out sets are read under the prompt protocol; one pass gives both
        # their compression rate (every token) and the margin (the continuation's tokens).
        prompted = name in ("positive", "negative")
        frame = read_parquet(path, ["text", "prompt"] if prompted else ["text"])
        seqs = encode(tok, frame["text"].tolist(), max_tokens,
                      frame["prompt"].tolist() if prompted else None)
        lps, _ = forward(net, seqs, batch_size=batch_size, device=device,
                         pad_id=tok.pad_token_id)
        n_bytes = sum(len(tok.decode(ids[1:]).encode("utf-8")) for ids, _ in seqs)
        row[f"bits_per_token_{name}"], row[f"bits_per_byte_{name}"] = compression(lps, n_bytes)
        if prompted:
            row[f"loglik_{name}"] = float(np.mean([lp[start - 1:].mean()
                                                   for lp, (_, start) in zip(lps, seqs,
                                                                             strict=True)]))
    row["margin"] = row["loglik_positive"] - row["loglik_negative"]
    reference = net if base == model else load_model(base).to(device).eval()
    seqs = encode(tok, read_parquet(prompts, ["text"])["text"].tolist(), max_tokens)
    _, kls = forward(net, seqs, batch_size=batch_size, device=device, pad_id=tok.pad_token_id,
                     reference=reference)
    row["kl_to_base"] = float(np.concatenate(kls).mean())
    log.info("%s: %s (%.1fs)", model, {k: round(v, 4) for k, v in row.items()},
             time.time() - start)
    frame = pd.DataFrame([{**cell, **row, "model_parameters": parameter_count(net),
                           "config_hash": config_hash, "code_version": code_version()}])
    write_parquet(frame, out, {"cell": cell, "model": model, "base": base, "sets": sets,
                               "prompts": prompts, "max_tokens": max_tokens})
    return {k: round(v, 5) for k, v in row.items()}
