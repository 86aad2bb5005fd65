"""Models: the micro-world's BPE tokenizer and Llama models built from config; loading saved
models and counting any model's parameters from its config."""

from __future__ import annotations

import errno
import functools
import json
import logging
import os
from pathlib import Path
from typing import Any

import pandas as pd

from elasticity.io import DamagedOutputError, atomic_path, read_parquet

log = logging.getLogger(__name__)

EOS = "<|endoftext|>"


def train_tokenizer(corpus: str, out: str, *, vocab_size: int, min_frequency: int) -> None:
    """Step `tokenizer`: a byte-level BPE tokenizer trained on the pretraining corpus."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    texts = read_parquet(corpus, ["text"])["text"].tolist()
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, min_frequency=min_frequency, special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(texts, trainer=trainer)
    # Every text opens with EOS-as-BOS, as it does in the pretraining stream.
    tok.post_processor = processors.TemplateProcessing(
        single=f"{EOS} $A", special_tokens=[(EOS, tok.token_to_id(EOS))],
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=EOS, eos_token=EOS, pad_token=EOS, unk_token=EOS,
    )
    with atomic_path(out) as tmp:
        fast.save_pretrained(tmp)
    log.info("tokenizer: %d tokens trained on %d texts -> %s", len(fast), len(texts), out)


def load_tokenizer(path: str, padding_side: str = "right"):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    tok.padding_side = padding_side
    return tok


def build_model(architecture: dict[str, Any], tokenizer, seed: int):
    """A randomly initialised LlamaForCausalLM; `architecture` holds LlamaConfig fields."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **architecture,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config)


def load_model(path: str):
    """A saved model; a damaged one fails naming its directory and how to rebuild it."""
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(path, dtype="float32")
    except Exception as err:
        raise DamagedOutputError(path, err) from err


def architecture_error(architecture: dict[str, Any], vocab_size: int) -> str | None:
    """Why LlamaForCausalLM cannot be built from these fields and run, or None.

    The model class is asked, not a copy of its rules: the config is constructed and a model
    built on the meta device (no memory) runs a forward pass of two tokens.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    try:
        config = LlamaConfig(vocab_size=vocab_size, **architecture)
        with torch.device("meta"):
            model = LlamaForCausalLM(config)
            model(input_ids=torch.zeros(1, 2, dtype=torch.long))
    except Exception as err:  # whatever the class refuses, in its own words
        return f"{type(err).__name__}: {err}"
    return None


def parameters_from_config(model_dir: str | os.PathLike) -> int:
    """The parameter count of the model that model_dir/config.json describes (tied weights
    counted once), without reading any weights: its own class (`architectures`) where
    transformers has it, else the causal LM of its model type, else the bare model (a scorer's
    checkpoint may be any of these).

    Where the directory holds safetensors weights, their headers give the same count without
    importing torch and transformers (seconds in the Snakemake process, which asks this for
    every job it schedules).

    A missing config.json raises FileNotFoundError whose `filename` is `model_dir` itself: the
    scheduling code asks before the base exists, and Snakemake takes that for "not yet known"."""
    path = Path(model_dir) / "config.json"
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, "no config.json in model directory",
                                os.fspath(model_dir)) from None
    counted = _safetensors_parameters(Path(model_dir))
    return counted if counted is not None else _parameters_of(text)


def _safetensors_parameters(model_dir: Path) -> int | None:
    """The number of weights the directory's safetensors files hold (save_pretrained stores a
    tied weight once), from their headers alone; None without safetensors weights."""
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
    elif (model_dir / "model.safetensors").is_file():
        shards = ["model.safetensors"]
    else:
        return None
    total = 0
    for shard in shards:
        with open(model_dir / shard, "rb") as fh:
            # The format: an 8-byte little-endian header length, then a JSON header of shapes.
            header = json.loads(fh.read(int.from_bytes(fh.read(8), "little")))
        for name, tensor in header.items():
            if name != "__metadata__":
                total += functools.reduce(lambda a, b: a * b, tensor["shape"], 1)
    return total


@functools.cache
def _parameters_of(config_json: str) -> int:
    # Memoised on the config's content: scheduling asks for every job of a grid, and building
    # even a meta-device model takes tens of milliseconds.
    import torch
    import transformers
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM

    fields = json.loads(config_json)
    config = AutoConfig.for_model(**fields)
    named = getattr(transformers, (fields.get("architectures") or [""])[0], None)
    # The model class itself counts, whatever the architecture; on the meta device it allocates
    # no memory.
    with torch.device("meta"):
        if isinstance(named, type) and issubclass(named, transformers.PreTrainedModel):
            model = named(config)
        else:
            try:
                model = AutoModelForCausalLM.from_config(config)
            except ValueError:  # a model type without a causal LM (an encoder)
                model = AutoModel.from_config(config)
    return parameter_count(model)


def parameter_count(model) -> int:
    return int(sum(p.numel() for p in model.parameters()))


def texts_of(path: str, limit: int | None = None) -> list[str]:
    frame: pd.DataFrame = read_parquet(path, ["text"])
    texts = frame["text"].tolist()
    return texts if limit is None else texts[:limit]
