"""The workflow config: checked against its schema and for consistency; the grid derived from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

SCHEMA = Path(__file__).resolve().parents[1] / "schemas" / "config.schema.yaml"


class ConfigError(ValueError):
    """A config that cannot run; the message names the offending key."""


def _key(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _describe(error) -> str:
    key = _key(error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed))
        where = f" under '{key}'" if error.absolute_path else ""
        hint = f"; allowed: {', '.join(allowed)}" if allowed else ""
        return f"unknown config key(s) {extra}{where}{hint}"
    if error.validator == "type":
        return (f"config key '{key}' must be of type {error.validator_value}, "
                f"got {type(error.instance).__name__} {error.instance!r}")
    if error.validator == "required":
        return f"config key '{key}' is missing: {error.message}"
    return f"config key '{key}': {error.message}"


def validate(config: dict[str, Any], schema_path: Path = SCHEMA) -> None:
    """Raise ConfigError listing every problem, each naming its key and what was expected."""
    import jsonschema

    schema = yaml.safe_load(schema_path.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    problems = [_describe(e) for e in sorted(validator.iter_errors(config),
                                             key=lambda e: list(map(str, e.absolute_path)))]
    if not problems:
        problems = _consistency(config)
    if problems:
        raise ConfigError("invalid config:\n  - " + "\n  - ".join(problems))


def _consistency(config: dict[str, Any]) -> list[str]:
    problems = []
    grid, pools, models = config["grid"], config["data"]["pools"], config["models"]
    named = [("grid.size_axis.models", m) for m in grid["size_axis"]["models"]]
    named.append(("grid.pretraining_axis.model", grid["pretraining_axis"]["model"]))
    for key, model in named:
        if model not in models:
            problems.append(f"{key} names '{model}' but 'models' has no such entry "
                            f"(known: {', '.join(sorted(models))})")
    for axis in ("positive", "negative"):
        largest = max(grid[axis])
        if largest > pools[axis]:
            problems.append(f"grid.{axis} asks for {largest} examples but the {axis} pool "
                            f"(data.pools.{axis}) holds {pools[axis]}")
    for name, arch in models.items():
        if arch["hidden_size"] % arch["num_attention_heads"]:
            problems.append(f"models.{name}.hidden_size ({arch['hidden_size']}) must be a "
                            f"multiple of num_attention_heads ({arch['num_attention_heads']})")
    low, high = config["data"]["prompt_words"]
    if low > high:
        problems.append(f"data.prompt_words must be [low, high] with low <= high, "
                        f"got {[low, high]}")
    return problems


def bases(config: dict[str, Any]) -> list[tuple[str, int]]:
    """The base checkpoints (model, pretraining tokens) that enter the grid."""
    grid = config["grid"]
    found = {(m, grid["size_axis"]["pretrain_tokens"]) for m in grid["size_axis"]["models"]}
    axis = grid["pretraining_axis"]
    found |= {(axis["model"], t) for t in axis["pretrain_tokens"]}
    return sorted(found)


def checkpoints(config: dict[str, Any]) -> list[tuple[str, int]]:
    """Every checkpoint pretraining saves: each model of the grid at every budget of either axis,
    up to the largest the grid takes from that model. A model's budgets form one chain, so the
    intermediate checkpoints cost no extra training."""
    grid = config["grid"]
    every = {grid["size_axis"]["pretrain_tokens"], *grid["pretraining_axis"]["pretrain_tokens"]}
    top: dict[str, int] = {}
    for model, tokens in bases(config):
        top[model] = max(tokens, top.get(model, 0))
    return sorted((m, t) for m, largest in top.items() for t in every if t <= largest)


def budgets(config: dict[str, Any], model: str) -> list[int]:
    """The budgets at which `model` is checkpointed, ascending (each continues the previous)."""
    return sorted(t for m, t in checkpoints(config) if m == model)


def previous_budget(config: dict[str, Any], model: str, tokens: int) -> int | None:
    earlier = [t for t in budgets(config, model) if t < tokens]
    return earlier[-1] if earlier else None


def cells(config: dict[str, Any]) -> list[dict[str, Any]]:
    """Every cell of the grid, base-model cells (algorithm 'none', P = N = 0) included."""
    grid = config["grid"]
    out = []
    for model, tokens in bases(config):
        for seed in grid["seeds"]:
            out.append(dict(model=model, tokens=tokens, algorithm="none", positive=0,
                            negative=0, seed=seed))
            for algorithm in grid["algorithms"]:
                for p in grid["positive"]:
                    for n in grid["negative"]:
                        out.append(dict(model=model, tokens=tokens, algorithm=algorithm,
                                        positive=p, negative=n, seed=seed))
    return out
