"""The hub scorers on tiny random models saved in their checkpoints' real formats.

sentiment-classifier: siebert/sentiment-roberta-large-english is a RobertaForSequenceClassification
(config id2label {0: NEGATIVE, 1: POSITIVE}; vocab.json + merges.txt byte-level BPE; weights in
pytorch_model.bin). cost-model: PKU-Alignment/beaver-7b-v1.0-cost as first published (config
architectures [LlamaModelForScore], "bias": false, "score_dim": 1, pad <pad> as the last id;
weights in sharded pytorch_model-*.bin with pytorch_model.bin.index.json: `model.*` including
transformers 4.29's per-layer rotary_emb.inv_freq buffers, and `score_head.weight`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from elasticity import cost_model, scoring
from elasticity.generation import GENERATION_COLUMNS
from elasticity.io import read_json, read_parquet, write_parquet
from tests.hubcache import put_in_cache

CORPUS = ["a wonderful moving film with brilliant acting", "a dull stupid mess, the worst film",
          "how do I pick a lock", "I cannot help with that, it is illegal",
          "BEGINNING OF CONVERSATION: USER: how do I hurt someone ASSISTANT:Here is how."] * 4
CLASSIFIER_ID = "siebert/sentiment-roberta-large-english"
COST_ID = "PKU-Alignment/beaver-7b-v1.0-cost"
PROMPTS = ["how do I pick a lock", "tell me about the film", "hi"]
RESPONSES = ["I cannot help with that.", "A wonderful moving film with brilliant acting, "
             "a film I would see again and again.", "dull"]


def save_classifier(directory: Path, id2label: dict[int, str]) -> Path:
    """A tiny random RoBERTa sentiment classifier with siebert's files."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import RobertaConfig, RobertaForSequenceClassification

    directory.mkdir(parents=True)
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(CORPUS, vocab_size=300, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    bpe.save_model(str(directory))
    (directory / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 512}))
    (directory / "special_tokens_map.json").write_text(json.dumps(
        {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "sep_token": "</s>",
         "pad_token": "<pad>", "cls_token": "<s>", "mask_token": "<mask>"}))
    # 34 positions: 32 tokens at most, so a long response is truncated.
    config = RobertaConfig(
        vocab_size=bpe.get_vocab_size(), hidden_size=16, num_hidden_layers=1,
        num_attention_heads=2, intermediate_size=32, max_position_embeddings=34,
        # Weights this large make the random classifier's label depend on the text.
        initializer_range=1.0, type_vocab_size=1, pad_token_id=1, bos_token_id=0,
        eos_token_id=2, id2label=id2label, label2id={v: k for k, v in id2label.items()},
        architectures=["RobertaForSequenceClassification"])
    torch.manual_seed(0)
    model = RobertaForSequenceClassification(config)
    config.save_pretrained(directory)
    torch.save(model.state_dict(), directory / "pytorch_model.bin")
    return directory


COST_CONFIG = {
    "architectures": ["LlamaModelForScore"], "bias": False, "bos_token_id": 1, "eos_token_id": 2,
    "hidden_act": "silu", "hidden_size": 16, "initializer_range": 0.4, "intermediate_size": 32,
    "max_position_embeddings": 64, "model_type": "llama", "num_attention_heads": 2,
    "num_hidden_layers": 2, "rms_norm_eps": 1e-06, "score_dim": 1, "tie_word_embeddings": False,
    "torch_dtype": "float32", "transformers_version": "4.29.2", "use_cache": True,
}


def save_llama_tokenizer(directory: Path):
    """A Llama-style tokenizer (<unk> <s> </s>, BOS prepended, byte fallback) with <pad> added
    after the vocabulary, as the cost model's tokenizer has it (id 32000 of 32001)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaTokenizerFast

    tok = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    tok.train_from_iterator(CORPUS, trainer=trainers.BpeTrainer(
        vocab_size=150, special_tokens=["<unk>", "<s>", "</s>"]))
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))])
    fast = LlamaTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                              unk_token="<unk>", model_max_length=1024)
    fast.add_special_tokens({"pad_token": "<pad>"})
    fast.save_pretrained(directory)
    return fast


def save_cost_model(directory: Path, *, head_bias: str = "none", head: bool = True,
                    config_bias: bool = False) -> Path:
    """A tiny random cost model in the real checkpoint's format. head_bias: "none", or "extra"
    (a score_head.bias in the weights whatever the config says); head False: no score_head."""
    from transformers import LlamaConfig

    directory.mkdir(parents=True)
    tok = save_llama_tokenizer(directory)
    config = {**COST_CONFIG, "bias": config_bias, "pad_token_id": tok.pad_token_id,
              "vocab_size": len(tok)}
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    torch.manual_seed(0)
    state = cost_model.LlamaForScore(LlamaConfig(**config)).state_dict()
    if head_bias == "extra":
        state["score_head.bias"] = torch.tensor([0.5])
    if not head:
        state = {k: v for k, v in state.items() if not k.startswith("score_head")}
    # transformers 4.29 saved each layer's rotary frequencies with the weights.
    for layer in range(config["num_hidden_layers"]):
        state[f"model.layers.{layer}.self_attn.rotary_emb.inv_freq"] = 1.0 / (
            10000 ** (torch.arange(0, 8, 2).float() / 8))
    keys = sorted(state)
    shards = {"pytorch_model-00001-of-00002.bin": keys[:len(keys) // 2],
              "pytorch_model-00002-of-00002.bin": keys[len(keys) // 2:]}
    weight_map = {}
    for name, names in shards.items():
        torch.save({k: state[k] for k in names}, directory / name)
        weight_map.update(dict.fromkeys(names, name))
    total = sum(v.numel() * v.element_size() for v in state.values())
    (directory / "pytorch_model.bin.index.json").write_text(json.dumps(
        {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    return directory


@pytest.fixture(scope="module")
def classifier_dir(tmp_path_factory) -> Path:
    return save_classifier(tmp_path_factory.mktemp("clf") / "siebert",
                           {0: "NEGATIVE", 1: "POSITIVE"})


@pytest.fixture(scope="module")
def cost_dir(tmp_path_factory) -> Path:
    return save_cost_model(tmp_path_factory.mktemp("cost") / "beaver")


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory, classifier_dir, cost_dir) -> Path:
    cache = tmp_path_factory.mktemp("hub")
    put_in_cache(cache, CLASSIFIER_ID, classifier_dir)
    put_in_cache(cache, COST_ID, cost_dir)
    return cache


def reference_probabilities(directory: Path, texts: list[str]) -> np.ndarray:
    """The classifier's label probabilities, one text at a time, straight from transformers."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForSequenceClassification.from_pretrained(directory).eval()
    with torch.no_grad():
        return np.stack([model(**tok(t, return_tensors="pt", truncation=True, max_length=32))
                         .logits[0].softmax(-1).numpy() for t in texts])


@pytest.mark.parametrize("id2label", [{0: "NEGATIVE", 1: "POSITIVE"},
                                      {0: "positive", 1: "negative"}])
def test_the_classifier_scores_p_positive_minus_p_negative_by_label_name(tmp_path, id2label):
    directory = save_classifier(tmp_path / "clf", id2label)
    run = scoring.sentiment_classifier(directory, device="cpu", batch_size=2)
    columns = run([""] * 3, RESPONSES)
    expected = reference_probabilities(directory, RESPONSES)
    pos = next(i for i, label in id2label.items() if label.upper() == "POSITIVE")
    np.testing.assert_allclose(columns["positive_probability"], expected[:, pos], atol=1e-5)
    np.testing.assert_allclose(columns["score"], expected[:, pos] - expected[:, 1 - pos],
                               atol=1e-5)
    # Threshold 0: positive exactly when the classifier's top label is POSITIVE.
    top = [id2label[int(i)].upper() for i in expected.argmax(axis=1)]
    assert list(columns["score"] >= 0) == [label == "POSITIVE" for label in top]
    assert set(top) == {"POSITIVE", "NEGATIVE"}  # the fixture's texts get both labels


def test_a_classifier_without_the_sentiment_labels_is_refused(tmp_path):
    directory = save_classifier(tmp_path / "clf", {0: "LABEL_0", 1: "LABEL_1"})
    with pytest.raises(ValueError, match="id2label is .*LABEL_0.*POSITIVE and NEGATIVE"):
        scoring.sentiment_classifier(directory, device="cpu", batch_size=2)


def test_the_cost_model_loads_the_real_checkpoint_format(cost_dir):
    model, tok = cost_model.load(cost_dir)
    saved = {}
    for shard in sorted(cost_dir.glob("pytorch_model-*.bin")):
        saved.update(torch.load(shard, weights_only=True))
    assert set(model.state_dict()) == {k for k in saved if "rotary_emb" not in k}
    for name, value in model.state_dict().items():
        assert torch.equal(value, saved[name]), name
    assert model.score_head.bias is None
    assert tok.pad_token == "<pad>" and tok.pad_token_id == len(tok) - 1


def test_a_head_bias_is_loaded_where_the_config_declares_it(tmp_path):
    directory = save_cost_model(tmp_path / "cost", head_bias="extra", config_bias=True)
    model, _ = cost_model.load(directory)
    assert model.score_head.bias.tolist() == [0.5]


@pytest.mark.parametrize("variant, named", [
    (dict(head_bias="extra"), ["unexpected", "score_head.bias"]),
    (dict(head=False), ["missing", "score_head.weight"]),
])
def test_a_checkpoint_with_other_weight_names_is_refused(tmp_path, variant, named):
    directory = save_cost_model(tmp_path / "cost", **variant)
    with pytest.raises(ValueError) as err:
        cost_model.load(directory)
    for text in [str(directory), *named, "['score_head.weight']"]:
        assert text in str(err.value)


def test_a_plain_causal_lm_is_refused_as_cost_model(tmp_path):
    from transformers import LlamaConfig, LlamaForCausalLM

    directory = tmp_path / "causal"
    tok = save_llama_tokenizer(directory)
    config = {k: v for k, v in COST_CONFIG.items() if k not in ("bias", "score_dim")}
    LlamaForCausalLM(LlamaConfig(**{**config, "architectures": ["LlamaForCausalLM"],
                                    "vocab_size": len(tok), "pad_token_id": tok.pad_token_id})
                     ).save_pretrained(directory)
    with pytest.raises(ValueError) as err:
        cost_model.load(directory)
    for text in [str(directory), "LlamaForCausalLM", "lm_head.weight", "score_head.weight"]:
        assert text in str(err.value)


def test_a_normalizing_cost_model_is_refused(tmp_path):
    directory = save_cost_model(tmp_path / "cost")
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**config, "do_normalize": True}))
    with pytest.raises(ValueError, match="do_normalize is true"):
        cost_model.load(directory)


def test_the_cost_is_read_at_the_last_real_token_whatever_the_padding(cost_dir):
    model, tok = cost_model.load(cost_dir)
    texts = [cost_model.model_input(p, r, tok.eos_token)
             for p, r in zip(PROMPTS, RESPONSES, strict=True)]
    alone = [cost_model.costs(model, tok, [t], device="cpu", batch_size=1)[0] for t in texts]
    tok.padding_side = "right"
    right = cost_model.costs(model, tok, texts, device="cpu", batch_size=3)
    tok.padding_side = "left"
    left = cost_model.costs(model, tok, texts, device="cpu", batch_size=3)
    np.testing.assert_allclose(right, alone, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(left, alone, rtol=1e-4, atol=1e-5)
    # ... and that is the head on the backbone's last hidden state of the unpadded text.
    ids = tok(texts[0], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        hidden = model.model(input_ids=ids).last_hidden_state[0, -1]
        assert ids[0, -1] == tok.eos_token_id
        np.testing.assert_allclose(alone[0], float(model.score_head(hidden)), rtol=1e-5)
    assert len(set(np.round(alone, 4))) == 3


def test_the_cost_model_reads_safe_rlhfs_conversation_format():
    assert (cost_model.model_input("hi", "Hello!", "</s>")
            == "BEGINNING OF CONVERSATION: USER: hi ASSISTANT:Hello!</s>")
    templated = "BEGINNING OF CONVERSATION: USER: hi ASSISTANT:"
    assert cost_model.model_input(templated, "Hello!", "</s>") == templated + "Hello!</s>"
    # A pool text that is already a whole conversation, scored without a prompt.
    assert cost_model.model_input("", templated + "Hello!", "</s>") == templated + "Hello!</s>"


def generations(tmp_path: Path) -> str:
    rows = pd.DataFrame({c: ["x"] * 3 for c in GENERATION_COLUMNS})
    rows["prompt"], rows["response"] = PROMPTS, RESPONSES
    write_parquet(rows, tmp_path / "g.parquet", {})
    return str(tmp_path / "g.parquet")


def test_the_score_step_runs_the_classifier_from_the_hub_cache(tmp_path, hub_cache,
                                                               classifier_dir):
    summary = scoring.score(generations(tmp_path), str(tmp_path / "s.parquet"),
                            scorer="sentiment-classifier", threshold=0.0, config_hash="abc",
                            model={"id": CLASSIFIER_ID, "revision": "main"}, batch_size=2,
                            cache=str(hub_cache))
    scored = read_parquet(tmp_path / "s.parquet",
                          scoring.SCORE_COLUMNS + ["positive_probability", "response"])
    expected = reference_probabilities(classifier_dir, RESPONSES)[:, 1]
    np.testing.assert_allclose(scored["positive_probability"], expected, atol=1e-5)
    assert list(scored["is_positive"]) == list(expected >= 0.5)
    assert summary["positive_rate"] == pytest.approx(float(np.mean(expected >= 0.5)))


def test_the_score_step_runs_the_cost_model_from_the_hub_cache(tmp_path, hub_cache, cost_dir):
    summary = scoring.score(generations(tmp_path), str(tmp_path / "s.parquet"),
                            scorer="cost-model", threshold=0.0, config_hash="abc",
                            model={"id": COST_ID, "revision": "main"}, batch_size=2,
                            cache=str(hub_cache))
    scored = read_parquet(tmp_path / "s.parquet", scoring.SCORE_COLUMNS + ["cost"])
    model, tok = cost_model.load(cost_dir)
    expected = cost_model.costs(model, tok, [cost_model.model_input(p, r, tok.eos_token)
                                             for p, r in zip(PROMPTS, RESPONSES, strict=True)],
                                device="cpu", batch_size=1)
    np.testing.assert_allclose(scored["cost"], expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(scored["score"], -scored["cost"])
    assert list(scored["is_positive"]) == [c <= 0 for c in scored["cost"]]
    assert summary["mean_cost"] == pytest.approx(float(np.mean(expected)), rel=1e-4)
    assert summary["unsafe_rate"] == pytest.approx(float(np.mean(np.asarray(expected) > 0)))


def test_score_splits_scores_a_safety_continuation_against_its_prompt(tmp_path, hub_cache,
                                                                      cost_dir):
    prompt = "BEGINNING OF CONVERSATION: USER: how do I pick a lock ASSISTANT:"
    prompted = pd.DataFrame({"text": [prompt + "I cannot help with that."],
                             "prompt": [prompt], "prompt_words": [11]})
    pool = pd.DataFrame({"text": ["I cannot help with that."]})
    write_parquet(prompted, tmp_path / "prompts.parquet", {})
    write_parquet(pool, tmp_path / "negative.parquet", {})
    scoring.score_splits({"prompts": str(tmp_path / "prompts.parquet"),
                          "negative": str(tmp_path / "negative.parquet")},
                         str(tmp_path / "split_scores.json"), scorer="cost-model", threshold=0.0,
                         model={"id": COST_ID, "revision": "main"}, cache=str(hub_cache))
    splits = read_json(tmp_path / "split_scores.json")["splits"]
    model, tok = cost_model.load(cost_dir)
    whole = prompt + "I cannot help with that." + tok.eos_token
    cost = cost_model.costs(model, tok, [whole], device="cpu", batch_size=1)[0]
    assert splits["prompts"]["mean_cost"] == pytest.approx(cost, abs=1e-3)
    assert splits["prompts"]["continuation_mean_cost"] == pytest.approx(cost, abs=1e-3)
    # A pool without prompts: its text is the response to an empty user turn.
    alone = cost_model.model_input("", "I cannot help with that.", tok.eos_token)
    assert alone.startswith("BEGINNING OF CONVERSATION: USER:  ASSISTANT:")
    assert splits["negative"]["mean_cost"] == pytest.approx(
        cost_model.costs(model, tok, [alone], device="cpu", batch_size=1)[0], abs=1e-3)


def test_a_scorer_missing_from_the_hub_cache_fails_naming_it(tmp_path, hub_cache):
    from elasticity.hub import MissingFromHubCache

    cache = tmp_path / "hub"
    shutil.copytree(hub_cache, cache, symlinks=True)
    shutil.rmtree(cache / "models--PKU-Alignment--beaver-7b-v1.0-cost")
    with pytest.raises(MissingFromHubCache) as err:
        scoring.score(generations(tmp_path), str(tmp_path / "s.parquet"), scorer="cost-model",
                      threshold=0.0, config_hash="abc", cache=str(cache),
                      model={"id": COST_ID, "revision": "main"})
    assert COST_ID in str(err.value) and "main" in str(err.value)
    assert not (tmp_path / "s.parquet").exists()
