"""The likelihood metrics (elasticity.likelihood) against direct computations."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from elasticity import likelihood
from elasticity.models import build_model, load_model, load_tokenizer

from .conftest import SMOKE, TINY_ARCH


@pytest.fixture(scope="module")
def tok(tokenizer_dir):
    return load_tokenizer(str(tokenizer_dir))


def test_a_continuation_is_scored_from_the_first_token_after_its_prompt(tok):
    text, prompt = "a truly wonderful film about love", "a truly"
    [(ids, start)] = likelihood.encode(tok, [text], 64, [prompt])
    assert ids[:start] == tok(prompt)["input_ids"]
    assert tok.decode(ids[start:]) == " wonderful film about love"
    with pytest.raises(ValueError, match="not a proper prefix"):
        likelihood.encode(tok, [text], 64, ["truly a"])
    with pytest.raises(ValueError, match="not a proper prefix"):
        likelihood.encode(tok, ["a film"], 64, ["a film"])


def test_texts_whose_prompt_fills_the_window_are_left_out(tok):
    texts, prompts = ["a truly wonderful film about love", "so bad it hurts"], ["a truly", "so"]
    window = len(tok("so")["input_ids"]) + 1
    assert len(tok("a truly")["input_ids"]) >= window
    kept = likelihood.encode(tok, texts, window, prompts)
    assert [(tok.decode(ids[:start]), len(ids)) for ids, start in kept] == [
        (tok.decode(tok("so")["input_ids"]), window)]
    with pytest.raises(ValueError, match="every prompt fills"):
        likelihood.encode(tok, texts[:1], window, prompts[:1])


def test_log_probabilities_match_the_models_own_loss_and_ignore_padding(tok, base_dir):
    net = load_model(str(base_dir)).eval()
    texts = ["a truly wonderful film", "the plot is thin and the acting is worse than that"]
    seqs = likelihood.encode(tok, texts, 64)
    batched, _ = likelihood.forward(net, seqs, batch_size=2, device="cpu",
                                    pad_id=tok.pad_token_id)
    for (ids, _), lp in zip(seqs, batched, strict=True):
        alone, _ = likelihood.forward(net, [(ids, 1)], batch_size=1, device="cpu",
                                      pad_id=tok.pad_token_id)
        np.testing.assert_allclose(lp, alone[0], atol=1e-5)
        tensor = torch.tensor([ids])
        with torch.no_grad():
            loss = net(input_ids=tensor, labels=tensor).loss.item()
        assert len(lp) == len(ids) - 1
        assert -lp.mean() == pytest.approx(loss, abs=1e-5)


def test_kl_to_itself_is_zero_and_to_another_model_positive(tok, base_dir):
    net = load_model(str(base_dir)).eval()
    other = build_model(TINY_ARCH, tok, seed=1).eval()
    seqs = likelihood.encode(tok, ["a truly wonderful film", "dull"], 64)
    _, same = likelihood.forward(net, seqs, batch_size=2, device="cpu", pad_id=tok.pad_token_id,
                                 reference=net)
    _, kls = likelihood.forward(net, seqs, batch_size=2, device="cpu", pad_id=tok.pad_token_id,
                                reference=other)
    assert all((k == 0).all() for k in same)
    assert all((k > 0).all() for k in kls)


def test_compression_is_bits_per_token_and_per_byte():
    lps = [np.full(4, -math.log(2)), np.full(6, -2 * math.log(2))]  # 1 and 2 bits a token
    per_token, per_byte = likelihood.compression(lps, n_bytes=32)
    assert per_token == pytest.approx(16 / 10) and per_byte == pytest.approx(16 / 32)


def test_the_step_writes_one_row_with_the_cells_coordinates(tok, base_dir, small_splits,
                                                            tmp_path):
    sets = {name: str(small_splits / f"{split}.parquet")
            for name, split in likelihood.COMPRESSION_SETS.items()}
    cell = {"task": "sentiment", "model": "tiny-a", "pretrain_tokens": 4096,
            "algorithm": "none", "positive": 0, "negative": 0, "seed": 0}
    out = tmp_path / "likelihood.parquet"
    likelihood.likelihood(str(base_dir), str(base_dir), str(out), sets=sets,
                          prompts=str(small_splits / "prompts.parquet"), cell=cell,
                          max_tokens=SMOKE["pretraining"]["seq_len"], batch_size=16,
                          device="cpu", config_hash="abc")
    row = pd.read_parquet(out).iloc[0]
    assert {k: row[k] for k in cell} == cell
    assert row["kl_to_base"] == 0
    assert row["margin"] == pytest.approx(row["loglik_positive"] - row["loglik_negative"])
    for name in likelihood.COMPRESSION_SETS:
        assert 0 < row[f"bits_per_byte_{name}"] < row[f"bits_per_token_{name}"] < 12
    assert Path(out).with_name(out.name).exists()
