"""Experiment `resistance` (§5.1, App. B.1 and E): is inverse alignment easier than forward?

Step `resistance`, one seed: the resistance split (data.resistance, text that neither
pretraining nor alignment saw) is cut into n + 1 equal parts by a seeded permutation. The base
θ0 is fine-tuned one epoch per part on parts 1..n as a training chain (elasticity.finetuning):
slice θk continues θk-1 on part k. Each slice answers the prompts of part n + 1 (the config's
`generation` sampling), giving D_k. For every pair k < l, θk is trained on D_l (forward
alignment, path A) and θl on D_k (inverse alignment, path B), with the same hyperparameters
(align.sft). Per re-trained model: its final training loss (the paper's Table 1); its KL from
the partner it was trained towards, KL(θl ‖ θk→l) on D_l and KL(θk ‖ θl→k) on D_k (Table 2);
and its cross-entropy on the partner's answers (App. E's H(p_θl, p_θk→l)). KL and
cross-entropy are token means over the answer tokens, teacher-forced (the prompt is context).

Step `table`: seed means with percentile bootstrap intervals over seeds (elasticity.analysis),
Table 1 and Table 2 as the paper lays them out, the claims rows and a figure.
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from elasticity import chains
from elasticity.analysis import CLAIMS_COLUMNS, Bootstrap, claim_row
from elasticity.finetuning import finetune
from elasticity.generation import sample
from elasticity.io import atomic_path, read_parquet, write_parquet
from elasticity.likelihood import encode, forward
from elasticity.models import load_model, load_tokenizer
from elasticity.provenance import code_version

log = logging.getLogger(__name__)

DIRECTIONS = ("forward", "inverse")
# The measures of a re-trained model; each is lower when the alignment was easier.
MEASURES = {"train_loss": "final training loss", "kl": "KL to its partner (nats/token)",
            "cross_entropy": "cross-entropy on the partner's answers (nats/token)"}
# The measures the paper's claim is tested on (Table 1 and Table 2).
CLAIMED = ("train_loss", "kl")
RESULT_COLUMNS = ["seed", "k", "l", "direction", "examples", "answers", *MEASURES,
                  "code_version"]
TABLE_COLUMNS = ["k", "l", "measure", "direction", "value", "lower", "upper", "seeds"]


def resistance_problems(config: dict[str, Any]) -> list[str]:
    """What keeps the `resistance` block (and, when the experiment runs, its data) from
    working, each naming its key."""
    block = config.get("resistance")
    if block is None:
        if "resistance" in config["experiments"]:
            return ["experiments lists 'resistance' but the config has no `resistance` block "
                    "({model, slices, seed})"]
        return []
    problems = []
    if block["model"] not in config["models"]:
        problems.append(f"resistance.model names '{block['model']}' but 'models' has no such "
                        f"entry (known: {', '.join(sorted(config['models']))})")
    slices = block["slices"]
    if slices < 1:
        problems.append(f"resistance.slices is {slices}: at least 1 slice is needed")
    if "resistance" not in config["experiments"] or problems:
        return problems
    split = config["data"].get("resistance")
    if split is None:
        return problems + ["experiments lists 'resistance' but data.resistance is null: name "
                           "the held-out text it trains on ({source, examples})"]
    part = split["examples"] // (slices + 1)
    if part < 1:
        return problems + [f"data.resistance.examples ({split['examples']}) is fewer than the "
                           f"{slices + 1} parts that resistance.slices ({slices}) cuts it into"]
    # The slices are one training chain, a link a part: its volumes are the parts' ends.
    chained, why = chains.chains_over("sft", json.dumps(config["align"]["sft"], sort_keys=True),
                                      tuple(part * k for k in range(1, slices + 1)), 1)
    if not chained:
        problems.append(f"resistance: the slices are a training chain on align.sft over parts "
                        f"of {part} examples (data.resistance.examples // (resistance.slices "
                        f"+ 1)), which cannot chain: {why.split(': ', 1)[1]}")
    return problems


def cut(frame: pd.DataFrame, slices: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The training parts 1..n (one frame, part k the rows (k-1)m..km-1 of finetune's seeded
    order) and part n + 1, the prompts: equal parts of m = len(frame) // (n + 1) rows; the
    remainder is left out."""
    part = len(frame) // (slices + 1)
    if part < 1:
        raise ValueError(f"{len(frame)} examples cannot form {slices + 1} parts")
    order = np.random.default_rng(seed).permutation(len(frame))
    shuffled = frame.iloc[order].reset_index(drop=True)
    return (shuffled.iloc[:part * slices].reset_index(drop=True),
            shuffled.iloc[part * slices:part * (slices + 1)].reset_index(drop=True))


def pairs(slices: int) -> list[tuple[int, int]]:
    """Every slice pair k < l."""
    return [(lo, hi) for hi in range(2, slices + 1) for lo in range(1, hi)]


def answer_texts(prompts: list[str], responses: list[str]) -> list[str]:
    """A slice's answers as training text: the prompt, then the response after one space (the
    prompt protocol); an empty response leaves the prompt alone (the slice stopped at once)."""
    return [f"{p} {r}" if r else p for p, r in zip(prompts, responses, strict=True)]


def train_slices(base: str, pool: str, work: Path, *, slices: int, part: int, seed: int,
                 trainer: dict[str, Any], device: str) -> list[str]:
    """θ1..θn: a chain on the training parts, each link one more part."""
    models, previous = [], None
    for k in range(1, slices + 1):
        out = str(work / f"slice{k}")
        log.info("slice θ%d: part %d (%d examples)", k, k, part)
        finetune(model=base, pool=pool, out=out, examples=part * k, previous=previous,
                 trainer=trainer, device=device, seed=seed, stage="align")
        models.append(out)
        previous = out
    return models


def answer(model: str, prompts: list[str], *, seed: int, sampling: dict[str, Any],
           batch_size: int, device: str) -> list[str]:
    """A slice's sampled responses to the held-out prompts."""
    tok = load_tokenizer(model, padding_side="left")
    net = load_model(model).to(device).eval()
    return sample(net, tok, prompts, seed=seed, batch_size=batch_size, sampling=sampling,
                  device=device)


def divergence(partner: str, retrained: str, texts: list[str], prompts: list[str], *,
               max_tokens: int, batch_size: int, device: str) -> tuple[float, float, int]:
    """KL(partner ‖ retrained) and the re-trained model's cross-entropy, token means over the
    partner's answer tokens (nats), and how many answers were scored (empty ones have no
    tokens to score)."""
    tok = load_tokenizer(retrained)
    kept = [(t, p) for t, p in zip(texts, prompts, strict=True) if t != p]
    if not kept:
        return math.nan, math.nan, 0
    seqs = encode(tok, [t for t, _ in kept], max_tokens, [p for _, p in kept])
    theirs = load_model(partner).to(device).eval()
    mine = load_model(retrained).to(device).eval()
    _, kls = forward(theirs, seqs, batch_size=batch_size, device=device,
                     pad_id=tok.pad_token_id, reference=mine)
    logprobs, _ = forward(mine, seqs, batch_size=batch_size, device=device,
                          pad_id=tok.pad_token_id)
    answer_kl = np.concatenate([kl[start - 1:] for kl, (_, start) in zip(kls, seqs,
                                                                          strict=True)])
    answer_lp = np.concatenate([lp[start - 1:] for lp, (_, start) in zip(logprobs, seqs,
                                                                         strict=True)])
    return float(answer_kl.mean()), float(-answer_lp.mean()), len(seqs)


def _pool(texts: list[str], prompts: list[str], path: Path) -> str:
    write_parquet(pd.DataFrame({"text": texts, "prompt": prompts}), path, {})
    return str(path)


def resistance(base: str, split: str, out: str, *, slices: int, seed: int,
               trainer: dict[str, Any], sampling: dict[str, Any], generation_batch_size: int,
               likelihood_batch_size: int, max_tokens: int, device: str) -> pd.DataFrame:
    """Step `resistance` for one seed (module docstring): one row per slice pair and
    direction, written to `out`.

    base: θ0's directory (its tokenizer inside). split: the resistance split. trainer: align.sft.
    sampling: the generation section's sampling fields. max_tokens: the models' trained length.
    Everything else lives in a scratch directory next to `out`, cleared before and after."""
    start = time.time()
    frame = read_parquet(split, ["text", "prompt"])
    training, held = cut(frame, slices, seed)
    part = len(held)
    work = Path(out).with_name(f".{Path(out).name}.work")
    # A killed run's scratch is stale, not resumable: its models are seconds of training.
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        log.info("seed %d: %d parts of %d examples from %s (%d left out)", seed, slices + 1,
                 part, split, len(frame) - part * (slices + 1))
        pool = _pool(training["text"].tolist(), training["prompt"].tolist(),
                     work / "parts.parquet")
        models = train_slices(base, pool, work, slices=slices, part=part, seed=seed,
                              trainer=trainer, device=device)
        prompts = held["prompt"].tolist()
        answers = {}
        for k, model in enumerate(models, 1):
            responses = answer(model, prompts, seed=seed, sampling=sampling,
                               batch_size=generation_batch_size, device=device)
            answers[k] = _pool(answer_texts(prompts, responses), prompts,
                               work / f"answers{k}.parquet")
            log.info("D_%d: %d answers of θ%d, %d empty", k, len(responses), k,
                     sum(not r for r in responses))
        rows = []
        for lo, hi in pairs(slices):
            # forward: θk trained on D_l, towards θl; inverse: θl trained on D_k, towards θk.
            for direction, start_at, target in (("forward", lo, hi), ("inverse", hi, lo)):
                retrained = str(work / f"{direction}{lo}{hi}")
                log.info("%s alignment: θ%d trained on D_%d", direction, start_at, target)
                metrics = finetune(model=models[start_at - 1], pool=answers[target],
                                   out=retrained, examples=part, previous=None,
                                   trainer=trainer, device=device, seed=seed, stage="align")
                texts = read_parquet(answers[target], ["text", "prompt"])
                kl, entropy, scored = divergence(
                    models[target - 1], retrained, texts["text"].tolist(),
                    texts["prompt"].tolist(), max_tokens=max_tokens,
                    batch_size=likelihood_batch_size, device=device)
                rows.append({"seed": seed, "k": lo, "l": hi, "direction": direction,
                             "examples": part, "answers": scored,
                             "train_loss": metrics["train_loss"], "kl": kl,
                             "cross_entropy": entropy, "code_version": code_version()})
                log.info("%s θ%d→θ%d: %s", direction, start_at, target, rows[-1])
                shutil.rmtree(retrained)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = pd.DataFrame(rows, columns=RESULT_COLUMNS)
    write_parquet(result, out, {"base": base, "split": split, "slices": slices, "seed": seed,
                                "trainer": trainer, "sampling": sampling, "device": device,
                                "max_tokens": max_tokens})
    log.info("seed %d done in %.1fs", seed, time.time() - start)
    return result


def seed_values(results: pd.DataFrame, measure: str) -> tuple[list[tuple[int, int]],
                                                                np.ndarray]:
    """The pairs and an array (seeds, pairs, directions) of one measure."""
    table = results.pivot_table(index="seed", columns=["k", "l", "direction"], values=measure,
                                aggfunc="first")
    pair_list = sorted({(lo, hi) for lo, hi, _ in table.columns})
    values = np.stack([[table[(lo, hi, d)].to_numpy() for d in DIRECTIONS]
                       for lo, hi in pair_list], axis=1)
    return pair_list, values.transpose(2, 1, 0)


def summarize(results: pd.DataFrame, boot: Bootstrap) -> pd.DataFrame:
    """Seed means of every measure, pair and direction, with their intervals."""
    rows = []
    for measure in MEASURES:
        pair_list, values = seed_values(results, measure)
        for i, (lo, hi) in enumerate(pair_list):
            for j, direction in enumerate(DIRECTIONS):
                value, lower, upper = boot.interval(
                    lambda d, i=i, j=j, v=values: float(np.nanmean(v[d, i, j])))
                rows.append({"k": lo, "l": hi, "measure": measure, "direction": direction,
                             "value": value, "lower": lower, "upper": upper,
                             "seeds": len(boot.full)})
    return pd.DataFrame(rows, columns=TABLE_COLUMNS)


def claims(results: pd.DataFrame, boot: Bootstrap) -> pd.DataFrame:
    """The claim per pair and over all pairs, for each measure of CLAIMED: inverse minus
    forward, predicted < 0."""
    rows = []
    for measure in CLAIMED:
        name = "loss" if measure == "train_loss" else "KL"
        claim = f"inverse alignment is easier than forward: inverse {name} < forward {name}"
        pair_list, values = seed_values(results, measure)
        for i, (lo, hi) in enumerate(pair_list):
            rows.append(claim_row(claim, measure, f"θ{hi}→θ{lo} vs. θ{lo}→θ{hi}",
                                  f"inverse minus forward {MEASURES[measure]}, mean over seeds",
                                  "< 0", boot, lambda d, i=i, v=values: _difference(v[d, i])))
        rows.append(claim_row(claim, measure, f"all {len(pair_list)} slice pairs",
                              f"inverse minus forward {MEASURES[measure]}, mean over pairs and "
                              "seeds", "< 0", boot, lambda d, v=values: _difference(v[d])))
    return pd.DataFrame(rows, columns=CLAIMS_COLUMNS)


def _difference(values: np.ndarray) -> float:
    """Inverse minus forward of values whose last axis is DIRECTIONS."""
    return float(np.nanmean(values[..., 1] - values[..., 0]))


def _cell(row: pd.Series, mark: str) -> str:
    interval = "" if math.isnan(row["lower"]) else (
        f" <small>[{row['lower']:.4f}, {row['upper']:.4f}]</small>")
    return f"{row['value']:.4f} {mark}{interval}"


def _marks(summary: pd.DataFrame, measure: str) -> tuple[dict, int, int]:
    """Each (k, l, direction)'s cell with ↓ on the lower and ↑ on the higher value of its
    pair, and in how many of the pairs the inverse value is the lower."""
    cells, lower, total = {}, 0, 0
    for (lo, hi), both in summary[summary["measure"] == measure].groupby(["k", "l"]):
        by = both.set_index("direction")
        inverse_lower = by.at["inverse", "value"] < by.at["forward", "value"]
        lower += int(inverse_lower)
        total += 1
        for direction in DIRECTIONS:
            low = (direction == "inverse") == inverse_lower
            cells[(lo, hi, direction)] = _cell(by.loc[direction], "↓" if low else "↑")
    return cells, lower, total


def html(summary: pd.DataFrame, claim_rows: pd.DataFrame, *, model: str,
         interval: float) -> str:
    """Table 1 (training loss: θl→θk vs. θk→θl per pair) and Table 2 (KL, and cross-entropy:
    forward and inverse rows, one column per pair) as the paper lays them out."""
    pair_list = sorted({(lo, hi) for lo, hi in zip(summary["k"], summary["l"], strict=True)})
    loss, loss_lower, total = _marks(summary, "train_loss")
    head1 = "".join(f"<th colspan='2'>θ{hi} → θ{lo} vs. θ{lo} → θ{hi}</th>"
                    for lo, hi in pair_list)
    row1 = "".join(f"<td>{loss[(lo, hi, 'inverse')]}</td><td>{loss[(lo, hi, 'forward')]}</td>"
                   for lo, hi in pair_list)
    parts = [f"<h2>Table 1: inverse vs. forward alignment, final training loss ({interval:g}% "
             "bootstrap intervals over seeds)</h2>",
             f"<table><tr><th>Base model</th>{head1}</tr><tr><td>{model}</td>{row1}</tr>"
             "</table>",
             f"<p>inverse &lt; forward in {loss_lower} of {total} pairs</p>"]
    for measure, title in (("kl", "Table 2: KL divergence between re-trained models and "
                                  "their partners"),
                           ("cross_entropy", "Cross-entropy of re-trained models on their "
                                             "partners' answers (App. E)")):
        cells, lower, total = _marks(summary, measure)
        head = "".join(f"<th>θ{lo} vs. θ{hi}</th>" for lo, hi in pair_list)
        body = "".join(
            f"<tr><td><i>{direction.capitalize()} Alignment</i></td>"
            + "".join(f"<td>{cells[(lo, hi, direction)]}</td>" for lo, hi in pair_list)
            + "</tr>"
            for direction in DIRECTIONS)
        parts += [f"<h2>{title}</h2>",
                  f"<table><tr><th>Slices</th>{head}</tr>{body}</table>",
                  f"<p>inverse &lt; forward in {lower} of {total} pairs</p>"]
    shown = claim_rows.assign(interval=[
        "" if math.isnan(lo) else f"[{lo:.3g}, {hi:.3g}]"
        for lo, hi in zip(claim_rows["lower"], claim_rows["upper"], strict=True)])
    parts += ["<h2>Claims</h2>",
              shown[["claim", "metric", "scope", "estimate", "interval", "verdict",
                     "reason"]].to_html(index=False, float_format="{:.4g}".format, na_rep="")]
    return ("<html><head><meta charset='utf-8'><style>body{font-family:sans-serif}"
            "td,th{padding:2px 8px;border-bottom:1px solid #ddd}</style></head><body>"
            + "".join(parts) + "</body></html>")


def figure(summary: pd.DataFrame, out: str) -> None:
    """Forward and inverse side by side per pair, one panel per measure, with intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(MEASURES), figsize=(4 * len(MEASURES), 3.2))
    for ax, measure in zip(axes, MEASURES, strict=True):
        part = summary[summary["measure"] == measure]
        pair_list = sorted({(lo, hi) for lo, hi in zip(part["k"], part["l"], strict=True)})
        x = np.arange(len(pair_list))
        for offset, direction in ((-0.2, "forward"), (0.2, "inverse")):
            rows = part[part["direction"] == direction].set_index(["k", "l"]).loc[pair_list]
            errors = np.abs(rows[["lower", "upper"]].to_numpy().T - rows["value"].to_numpy())
            ax.bar(x + offset, rows["value"], 0.4, label=direction,
                   yerr=np.nan_to_num(errors), capsize=3)
        ax.set_xticks(x, [f"θ{lo}, θ{hi}" for lo, hi in pair_list])
        ax.set_title(MEASURES[measure], fontsize=9)
    axes[0].legend()
    fig.suptitle("Resistance: forward (θk → θl) vs. inverse (θl → θk) alignment")
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def table(results: list[str], out_table: str, out_html: str, out_claims: str, out_figure: str,
          *, model: str, interval: float, resamples: int) -> dict[str, int]:
    """Step `resistance_table`: the seeds' results (one file per seed) summarized; returns
    the claims' verdict counts."""
    frame = pd.concat([read_parquet(path, RESULT_COLUMNS) for path in results],
                      ignore_index=True)
    seeds = sorted(frame["seed"].unique())
    boot = Bootstrap(len(seeds), resamples, interval)
    # Bootstrap draws index seeds by position.
    frame["seed"] = frame["seed"].map({s: i for i, s in enumerate(seeds)})
    summary = summarize(frame, boot)
    claim_rows = claims(frame, boot)
    params = {"seeds": [int(s) for s in seeds], "interval": interval, "resamples": resamples,
              "model": model}
    write_parquet(summary, out_table, params)
    write_parquet(claim_rows.assign(experiment="resistance"), out_claims, params)
    with atomic_path(out_html) as tmp:
        tmp.write_text(html(summary, claim_rows, model=model, interval=interval))
    figure(summary, out_figure)
    counts = claim_rows["verdict"].value_counts().to_dict()
    log.info("resistance claims over %d seeds: %s", len(seeds), counts)
    return counts
