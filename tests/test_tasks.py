"""The hub-dataset tasks on tiny datasets in the hubs' exact layouts (README `configs:`, file
names and formats, column names), read from a hub cache as the prefetch leaves it."""

from __future__ import annotations

import copy
import gzip
import io
import json
import lzma
import re

import datasets
import pandas as pd
import pytest

from elasticity import data, tasks
from elasticity.hub import MissingFromHubCache
from elasticity.io import parquet_params, read_json, read_parquet

from .hubcache import put_in_cache

IMDB = "stanfordnlp/imdb"
PKU = "PKU-Alignment/PKU-SafeRLHF"
BEAVERTAILS = "PKU-Alignment/BeaverTails"
SETTINGS = dict(split_seed=0, pools={"positive": 8, "negative": 6}, heldout=3, eval_prompts=5,
                prompt_words=[2, 8], pretrain_eval=2)

# stanfordnlp/imdb's README front matter (its dataset_info abridged to the features).
IMDB_FEATURES_YAML = """dataset_info:
  config_name: plain_text
  features:
  - name: text
    dtype: string
  - name: label
    dtype:
      class_label:
        names:
          '0': neg
          '1': pos
"""
IMDB_README = """---
language:
- en
license: other
task_categories:
- text-classification
{features}configs:
- config_name: plain_text
  data_files:
  - split: train
    path: plain_text/train-*
  - split: test
    path: plain_text/test-*
  - split: unsupervised
    path: plain_text/unsupervised-*
  default: true
---

# Dataset Card for "imdb"
"""
IMDB_FEATURES = datasets.Features({"text": datasets.Value("string"),
                                   "label": datasets.ClassLabel(names=["neg", "pos"])})


def _parquet(rows: dict[str, list], features: datasets.Features | None = None) -> bytes:
    """A parquet file as the Hub's are written: by `datasets`, its features in the metadata."""
    buffer = io.BytesIO()
    datasets.Dataset.from_dict(rows, features=features).to_parquet(buffer)
    return buffer.getvalue()


def _review(split: str, i: int, label: int) -> str:
    mood = "a wonderful, moving film" if label == 1 else "a dull and clumsy mess"
    return (f"Review {i} of the {split} set: this was {mood}.<br /><br />I saw it in "
            f"{1990 + i} and would {'gladly' if label else 'never'} watch it again.")


def imdb_files(text_column: str = "text", empty: tuple[int, ...] = ()) -> dict[str, bytes]:
    """stanfordnlp/imdb as on the Hub: 40 train and 20 test reviews alternate labels 0/1;
    unsupervised has label -1. Reviews at the `empty` train positions are only a line break.
    Another `text_column` makes a copy of the dataset that names its text so."""
    def rows(split, n, labels):
        text = ["<br />" if split == "train" and i in empty else _review(split, i, labels[i])
                for i in range(n)]
        return {text_column: text, "label": labels}

    own = text_column == "text"
    features = IMDB_FEATURES if own else None
    return {
        "README.md": IMDB_README.format(features=IMDB_FEATURES_YAML if own else "").encode(),
        "plain_text/train-00000-of-00001.parquet":
            _parquet(rows("train", 40, [i % 2 for i in range(40)]), features),
        "plain_text/test-00000-of-00001.parquet":
            _parquet(rows("test", 20, [i % 2 for i in range(20)]), features),
        "plain_text/unsupervised-00000-of-00001.parquet":
            _parquet(rows("unsupervised", 10, [-1] * 10), features),
    }


PKU_README = """---
license: cc-by-nc-4.0
task_categories:
- text-generation
language:
- en
configs:
- config_name: default
  data_files:
  - split: train
    path:
    - data/Alpaca-7B/train.jsonl
    - data/Alpaca3-8B/train.jsonl
  - split: test
    path:
    - data/Alpaca-7B/test.jsonl
    - data/Alpaca3-8B/test.jsonl
- config_name: alpaca-7b
  data_files:
  - split: train
    path:
    - data/Alpaca-7B/train.jsonl
  - split: test
    path:
    - data/Alpaca-7B/test.jsonl
---

# Dataset Card for PKU-SafeRLHF
"""
HARMS = ["Endangering National Security", "Insulting Behavior", "Privacy Violation"]


def _question(i: int) -> str:
    return f"How do I deal with problem number {i} at home?"


def _pku_row(prompt: str, i: int, source: str) -> dict:
    safe = [i % 3 != 0, i % 2 == 0]
    return {
        "prompt": prompt,
        "response_0": f"Answer {i}a: {'ask a professional for help' if safe[0] else 'do harm'}.",
        "response_1": f"Answer {i}b: {'stay calm and talk it over' if safe[1] else 'hurt them'}.",
        "prompt_source": "Alpaca-7B" if source == "Alpaca-7B" else "Llama3-8B",
        "response_0_source": source,
        "response_1_source": source,
        "is_response_0_safe": safe[0],
        "is_response_1_safe": safe[1],
        "response_0_harm_category": {h: not safe[0] and j == i % 3 for j, h in enumerate(HARMS)},
        "response_1_harm_category": {h: not safe[1] and j == i % 3 for j, h in enumerate(HARMS)},
        "response_0_severity_level": 0 if safe[0] else 1 + i % 3,
        "response_1_severity_level": 0 if safe[1] else 1 + i % 3,
        "better_response_id": i % 2,
        "safer_response_id": 0 if safe[0] else 1,
        "response_0_sha256": f"{i:064x}",
        "response_1_sha256": f"{i + 1:064x}",
    }


def _jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def pku_files(readme: str = PKU_README) -> dict[str, bytes]:
    """PKU-SafeRLHF as on the Hub: jsonl per generating model. Train asks questions 0-29, some
    twice (as the dataset pairs several response pairs with one prompt); test asks 28-41, so
    questions 28 and 29 are in both."""
    files = {"README.md": readme.encode()}
    for source, (train, test) in {"Alpaca-7B": (range(0, 20), range(28, 36)),
                                  "Alpaca3-8B": (range(14, 30), range(34, 42))}.items():
        files[f"data/{source}/train.jsonl"] = _jsonl(
            [_pku_row(_question(i), i, source) for i in train])
        files[f"data/{source}/test.jsonl"] = _jsonl(
            [_pku_row(_question(i), i, source) for i in test])
    return files


BEAVERTAILS_README = """---
license: cc-by-nc-4.0
task_categories:
- text-classification
language:
- en
configs:
- config_name: default
  data_files:
  - split: 330k_train
    path: round0/330k/train.jsonl.xz
  - split: 330k_test
    path: round0/330k/test.jsonl.xz
  - split: 30k_train
    path: round0/30k/train.jsonl.gz
  - split: 30k_test
    path: round0/30k/test.jsonl.gz
---

# Dataset Card for BeaverTails
"""
CATEGORIES = ["animal_abuse", "child_abuse", "controversial_topics,politics",
              "discrimination,stereotype,injustice", "drug_abuse,weapons,banned_substance",
              "financial_crime,property_crime,theft", "hate_speech,offensive_language",
              "misinformation_regarding_ethics,laws_and_safety", "non_violent_unethical_behavior",
              "privacy_violation", "self_harm", "sexually_explicit,adult_content",
              "terrorism,organized_crime", "violence,aiding_and_abetting,incitement"]


def _beaver_row(i: int, question: int) -> dict:
    safe = i % 3 != 1
    return {"prompt": _question(question),
            "response": f"Reply {i}: {'please talk to someone you trust' if safe else 'do it'}",
            "category": {c: not safe and j == i % 14 for j, c in enumerate(CATEGORIES)},
            "is_safe": safe}


def beavertails_files() -> dict[str, bytes]:
    """BeaverTails as on the Hub: compressed jsonl, one (prompt, response) a row. Train asks
    questions 0-29, 20 of them twice; test asks 25-39."""
    train = [_beaver_row(i, i % 30) for i in range(50)]
    test = [_beaver_row(i, i - 25) for i in range(50, 65)]
    return {"README.md": BEAVERTAILS_README.encode(),
            "round0/330k/train.jsonl.xz": lzma.compress(_jsonl(train + test[:5])),
            "round0/330k/test.jsonl.xz": lzma.compress(_jsonl(test[5:])),
            "round0/30k/train.jsonl.gz": gzip.compress(_jsonl(train)),
            "round0/30k/test.jsonl.gz": gzip.compress(_jsonl(test))}


def _source(repo_id: str, **overrides) -> dict:
    defaults = {IMDB: dict(config="plain_text", train_split="train", test_split="test"),
                PKU: dict(config="default", train_split="train", test_split="test"),
                BEAVERTAILS: dict(config="default", train_split="30k_train",
                                  test_split="30k_test")}
    return {"id": repo_id, "revision": "main", **defaults[repo_id], **overrides}


def _prepare(step, tmp_path, files, source, out="out", **settings):
    cache = tmp_path / "hub"
    commit = put_in_cache(cache, source["id"], files, repo_type="dataset")
    step(str(tmp_path / out), cache=str(cache), source=source, **{**SETTINGS, **settings})
    return commit


def _splits(out) -> dict[str, pd.DataFrame]:
    return {name: read_parquet(out / f"{name}.parquet",
                               data.PROMPT_COLUMNS if name in data.PROMPTED
                               else data.SPLIT_COLUMNS)
            for name in data.SPLITS}


def _check_schema_and_disjointness(splits, repo_id):
    for name, frame in splits.items():
        assert list(frame.columns) == (data.PROMPT_COLUMNS if name in data.PROMPTED
                                       else data.SPLIT_COLUMNS), name
        assert (frame["source"] == repo_id).all()
        assert frame["text"].str.strip().str.len().gt(0).all()
    uids = [set(f["uid"]) for f in splits.values()]
    assert sum(len(u) for u in uids) == len(set().union(*uids))
    sizes = {name: len(f) for name, f in splits.items()}
    assert sizes == {"positive": 8, "negative": 6, "positive_eval": 3, "negative_eval": 3,
                     "prompts": 5, "pretrain_eval": 2, "pretrain": sizes["pretrain"]}
    for name, sign in (("positive", 1), ("negative", -1)):
        assert (splits[name]["rating"] == sign).all()
        assert (splits[f"{name}_eval"]["rating"] == sign).all()


def test_imdb_splits_follow_the_dataset(tmp_path):
    commit = _prepare(tasks.prepare_imdb, tmp_path, imdb_files(), _source(IMDB))
    splits = _splits(tmp_path / "out")
    _check_schema_and_disjointness(splits, IMDB)
    # Pools, held-out sets and pretraining text are the train reviews, all of them; the
    # prompts are test reviews.
    train = pd.concat([f for name, f in splits.items() if name != "prompts"])
    assert sorted(train["uid"]) == sorted(f"imdb:train:{i}" for i in range(40))
    assert splits["prompts"]["uid"].str.fullmatch(r"imdb:test:\d+").all()
    # Labels: 1 positive, 0 negative; the review's text without its <br /> tags.
    for _, row in train.iterrows():
        i = int(row["uid"].split(":")[-1])
        assert row["rating"] == (1 if i % 2 else -1)
        assert row["text"] == " ".join(_review("train", i, i % 2).replace("<br />", " ").split())
    for name in splits.keys() & set(data.PROMPTED):
        for _, row in splits[name].iterrows():
            words = row["text"].split()
            assert 2 <= row["prompt_words"] <= 8 and len(words) > row["prompt_words"]
            assert row["prompt"] == " ".join(words[:row["prompt_words"]])
    params = parquet_params(tmp_path / "out" / "positive.parquet")
    assert params["source"] == {**_source(IMDB), "commit": commit}
    summary = read_json(tmp_path / "out" / "summary.json")
    assert summary["splits"]["positive"]["rows"] == 8
    assert summary["dropped"] == {"empty_text": {"train": 0, "test": 0}, "train_in_test": 0}


def test_splits_are_deterministic_per_seed(tmp_path):
    files = imdb_files()
    for out, seed in (("a", 0), ("b", 0), ("c", 1)):
        _prepare(tasks.prepare_imdb, tmp_path, files, _source(IMDB), out=out, split_seed=seed)
    first, again, other = (_splits(tmp_path / out) for out in "abc")
    for name in data.SPLITS:
        pd.testing.assert_frame_equal(first[name], again[name])
    assert list(first["positive"]["uid"]) != list(other["positive"]["uid"])


def _conversation(prompt: str, response: str) -> str:
    return f"BEGINNING OF CONVERSATION: USER: {prompt} ASSISTANT:{response}"


def _user(prompt: str) -> str:
    return prompt.removeprefix("BEGINNING OF CONVERSATION: USER: ").removesuffix(" ASSISTANT:")


def _check_safety(splits, expected: dict[str, bool], test_users: set[str]):
    """expected maps each train/test conversation to its safety flag."""
    _check_schema_and_disjointness(splits, splits["positive"]["source"].iloc[0])
    for frame in splits.values():
        for _, row in frame.iterrows():
            assert expected[row["text"]] == (row["rating"] > 0), row["uid"]
    for name in splits.keys() & set(data.PROMPTED):
        frame = splits[name]
        assert all(text.startswith(prompt) and prompt.endswith(" ASSISTANT:")
                   for text, prompt in zip(frame["text"], frame["prompt"], strict=True))
        assert (frame["prompt_words"] == frame["prompt"].str.split().str.len()).all()
    prompts = splits["prompts"]["prompt"].map(_user)
    assert prompts.is_unique and set(prompts) <= test_users
    trained = pd.concat([f for name, f in splits.items() if name != "prompts"])
    assert not set(trained["text"].map(lambda t: t.split(" ASSISTANT:")[0])) & {
        f"BEGINNING OF CONVERSATION: USER: {u}" for u in test_users}
    pool_users = set(pd.concat([splits["positive"], splits["negative"]])["text"]
                     .map(lambda t: t.split(" ASSISTANT:")[0]))
    for name in ("positive_eval", "negative_eval"):
        assert not set(splits[name]["prompt"].str.removesuffix(" ASSISTANT:")) & pool_users


# Earlier revisions of the README declare no configs: `datasets` then finds the splits by the
# files' names, as the Hub does, in a config called default.
@pytest.mark.parametrize("readme", [PKU_README, PKU_README.split("configs:")[0] + "---\n"])
def test_pku_saferlhf_gives_each_response_its_own_example(tmp_path, readme):
    files = pku_files(readme)
    commit = _prepare(tasks.prepare_safety, tmp_path, files, _source(PKU))
    rows = {split: [json.loads(line) for name, content in files.items()
                    if name.endswith(f"/{split}.jsonl")
                    for line in content.decode().splitlines()] for split in ("train", "test")}
    expected = {_conversation(r["prompt"], r[f"response_{k}"]): r[f"is_response_{k}_safe"]
                for split in rows.values() for r in split for k in (0, 1)}
    test_users = {r["prompt"] for r in rows["test"]}
    splits = _splits(tmp_path / "out")
    _check_safety(splits, expected, test_users)
    train = pd.concat([f for name, f in splits.items() if name != "prompts"])
    assert train["uid"].str.fullmatch(r"safety:train:\d+:[01]").all()
    # Questions 28 and 29 are in both splits: their 2 train rows (4 examples) are dropped.
    assert len(train) == 2 * len(rows["train"]) - 4
    summary = read_json(tmp_path / "out" / "summary.json")
    assert summary["dropped"]["train_in_test"] == 4
    assert parquet_params(tmp_path / "out" / "prompts.parquet")["source"]["commit"] == commit


def test_pku_saferlhf_configs_pick_their_files(tmp_path):
    _prepare(tasks.prepare_safety, tmp_path, pku_files(), _source(PKU, config="alpaca-7b"),
             eval_prompts=8)
    splits = _splits(tmp_path / "out")
    # Only Alpaca-7B's files: train questions 0-19, test 28-35.
    assert len(pd.concat([f for n, f in splits.items() if n != "prompts"])) == 40
    assert set(splits["prompts"]["prompt"].map(_user)) == {_question(i) for i in range(28, 36)}


def test_beavertails_rows_are_examples(tmp_path):
    files = beavertails_files()
    _prepare(tasks.prepare_safety, tmp_path, files, _source(BEAVERTAILS))
    rows = [json.loads(line) for name in ("round0/30k/train.jsonl.gz", "round0/30k/test.jsonl.gz")
            for line in gzip.decompress(files[name]).decode().splitlines()]
    expected = {_conversation(r["prompt"], r["response"]): r["is_safe"] for r in rows}
    test_users = {r["prompt"] for r in rows[50:]}
    splits = _splits(tmp_path / "out")
    _check_safety(splits, expected, test_users)
    train = pd.concat([f for name, f in splits.items() if name != "prompts"])
    assert train["uid"].str.fullmatch(r"safety:30k_train:\d+:0").all()
    assert len(train) == sum(r["prompt"] not in test_users for r in rows[:50])


def test_the_safety_template_is_prompt_then_response():
    assert tasks.SAFETY_TEMPLATE.format(prompt="Hi?", response="Hello.") == \
        "BEGINNING OF CONVERSATION: USER: Hi? ASSISTANT:Hello."


@pytest.mark.parametrize("settings,messages", [
    (dict(pools={"positive": 25, "negative": 6}),
     [r"data\.pools\.positive \(25\) asks for more positive examples than the 20 in "
      r"stanfordnlp/imdb@main \(commit [0-9a-f]{40}\) config 'plain_text' split 'train' "
      r"\(files \['plain_text/train-00000-of-00001\.parquet'\]\)"]),
    (dict(heldout=13),
     [r"^data\.heldout \(13\) asks for 13 held-out positive examples but only 12 remain in "
      r"stanfordnlp/imdb@main .* split 'train' .* beside data\.pools\.positive \(held-out "
      r"examples share no review text"]),
    (dict(eval_prompts=21),
     [r"data\.eval_prompts \(21\) asks for more prompts than the 20 distinct ones in "
      r"stanfordnlp/imdb@main .* split 'test'"]),
    (dict(pretrain_eval=20),
     [r"data\.pretrain_eval \(20\) leaves no pretraining text: only 20 examples"]),
    (dict(pools={"positive": 30, "negative": 30}, eval_prompts=50),
     [r"data\.pools\.positive \(30\)", r"data\.pools\.negative \(30\)",
      r"data\.eval_prompts \(50\)"]),
])
def test_settings_the_dataset_cannot_satisfy_name_their_key_and_counts(tmp_path, settings,
                                                                      messages):
    with pytest.raises(ValueError) as err:
        _prepare(tasks.prepare_imdb, tmp_path, imdb_files(), _source(IMDB), **settings)
    problems = str(err.value).splitlines()
    assert len(problems) == len(messages)
    for message in messages:
        assert any(re.search(message, line) for line in problems), (message, problems)
    assert not (tmp_path / "out").exists()


def test_held_out_safety_examples_avoid_the_pools_prompts(tmp_path):
    # PKU pairs a safe and an unsafe response to most prompts, so the held-out examples run
    # out before the examples do.
    with pytest.raises(ValueError, match=r"data\.heldout \(30\) asks for 30 held-out positive "
                                         r"examples but only \d+ remain .* share no user "
                                         r"prompt with the pools"):
        _prepare(tasks.prepare_safety, tmp_path, pku_files(), _source(PKU), heldout=30)


def test_an_unknown_split_lists_the_datasets_splits(tmp_path):
    with pytest.raises(ValueError, match=r"data\.dataset\.train_split: stanfordnlp/imdb@main "
                                         r"\(commit [0-9a-f]{40}\) config 'plain_text' has no "
                                         r"split 'training'; its splits: \['test', 'train', "
                                         r"'unsupervised'\]"):
        _prepare(tasks.prepare_imdb, tmp_path, imdb_files(), _source(IMDB, train_split="training"))


def test_an_unknown_config_names_the_key(tmp_path):
    with pytest.raises(ValueError, match=r"data\.dataset\.config: PKU-Alignment/PKU-SafeRLHF@main "
                                         r".* has no usable config 'alpaca-8b'"):
        _prepare(tasks.prepare_safety, tmp_path, pku_files(), _source(PKU, config="alpaca-8b"))


def test_an_unlabelled_split_cannot_make_pools(tmp_path):
    with pytest.raises(ValueError, match=r"split 'unsupervised' .* column label holds \[-1\]"):
        _prepare(tasks.prepare_imdb, tmp_path, imdb_files(),
                 _source(IMDB, train_split="unsupervised"))


def test_a_missing_imdb_column_names_file_split_column_and_dataset(tmp_path):
    with pytest.raises(ValueError, match=r"split 'train' \(files \['plain_text/train-00000-of-"
                                         r"00001\.parquet'\]\) lacks column\(s\) \['text'\], "
                                         r"which the imdb task reads \(stanfordnlp/imdb has "
                                         r"columns \['text', 'label'\]\); its columns: "
                                         r"\['review', 'label'\]"):
        _prepare(tasks.prepare_imdb, tmp_path, imdb_files(text_column="review"), _source(IMDB))


def test_safety_data_of_neither_layout_names_both(tmp_path):
    rows = _jsonl([{"prompt": "q", "answer": "a", "is_safe": True}] * 3)
    files = {name: (lzma.compress(rows) if name.endswith(".xz") else
                    gzip.compress(rows) if name.endswith(".gz") else content)
             for name, content in beavertails_files().items()}
    with pytest.raises(ValueError) as err:
        _prepare(tasks.prepare_safety, tmp_path, files, _source(BEAVERTAILS))
    message = str(err.value)
    for part in ("split '30k_train' (files ['round0/30k/train.jsonl.gz'])",
                 "['response_0', 'response_1', 'is_response_0_safe', 'is_response_1_safe'], "
                 "which PKU-Alignment/PKU-SafeRLHF has",
                 "['response'], which PKU-Alignment/BeaverTails has",
                 "its columns: ['prompt', 'answer', 'is_safe']"):
        assert part in message


def test_safety_flags_must_be_true_or_false(tmp_path):
    files = pku_files()
    rows = [_pku_row(_question(i), i, "Alpaca-7B") for i in range(3)]
    rows[1]["is_response_1_safe"] = None
    files["data/Alpaca-7B/train.jsonl"] = _jsonl(rows)
    with pytest.raises(ValueError, match=r"split 'train' .*: column is_response_1_safe holds "
                                         r"\[None\], not only true/false"):
        _prepare(tasks.prepare_safety, tmp_path, files, _source(PKU))


def test_a_split_datasets_cannot_read_names_it(tmp_path):
    # A config's splits must share their columns, on the Hub as here.
    files = beavertails_files()
    files["round0/30k/train.jsonl.gz"] = gzip.compress(_jsonl([{"prompt": "q", "answer": "a"}]))
    with pytest.raises(ValueError, match=r"split '30k_train' \(files \['round0/30k/train\.jsonl"
                                         r"\.gz'\]\): `datasets` cannot read it: "):
        _prepare(tasks.prepare_safety, tmp_path, files, _source(BEAVERTAILS))


def test_empty_reviews_are_dropped_and_counted(tmp_path):
    _prepare(tasks.prepare_imdb, tmp_path, imdb_files(empty=(0, 1, 2)), _source(IMDB))
    splits = _splits(tmp_path / "out")
    train = pd.concat([f for name, f in splits.items() if name != "prompts"])
    assert len(train) == 37 and not {"imdb:train:0", "imdb:train:1"} & set(train["uid"])
    dropped = read_json(tmp_path / "out" / "summary.json")["dropped"]
    assert dropped["empty_text"] == {"train": 3, "test": 0}


def test_a_split_of_only_empty_text_fails(tmp_path):
    with pytest.raises(ValueError, match=r"split 'train' .*: every row has empty text"):
        _prepare(tasks.prepare_imdb, tmp_path, imdb_files(empty=tuple(range(40))),
                 _source(IMDB))


def test_a_dataset_missing_from_the_cache_names_the_fetch_command(tmp_path):
    source = _source(IMDB, revision="v2")
    put_in_cache(tmp_path / "hub", IMDB, imdb_files(), repo_type="dataset")
    with pytest.raises(MissingFromHubCache, match=r"hub dataset stanfordnlp/imdb at revision "
                                                  r"v2 .*`snakemake prefetch --configfile"):
        tasks.prepare_imdb(str(tmp_path / "out"), cache=str(tmp_path / "hub"),
                           source=copy.deepcopy(source), **SETTINGS)


def test_a_hub_resistance_split_is_held_out_of_the_pretraining_text(tmp_path):
    files, source = imdb_files(), _source(IMDB)
    _prepare(tasks.prepare_imdb, tmp_path, files, source, out="plain")
    _prepare(tasks.prepare_imdb, tmp_path, files, source, out="held",
             resistance={"source": None, "examples": 4})
    plain = _splits(tmp_path / "plain")
    held = {name: read_parquet(tmp_path / "held" / f"{name}.parquet", data.PROMPT_COLUMNS
                               if name in data.PROMPTED else data.SPLIT_COLUMNS)
            for name in data.split_names({"source": None, "examples": 4})}
    assert not (tmp_path / "plain" / "resistance.parquet").exists()
    split = held[data.RESISTANCE]
    assert len(split) == 4 and list(split.columns) == data.PROMPT_COLUMNS
    text = set(plain["pretrain"]["uid"]) | set(plain["pretrain_eval"]["uid"])
    assert set(split["uid"]) <= text
    assert set(held["pretrain"]["uid"]) | set(held["pretrain_eval"]["uid"]) == text - set(
        split["uid"])
    for name in ("positive", "negative", "prompts", "positive_eval", "negative_eval"):
        pd.testing.assert_frame_equal(plain[name], held[name])
    for _, row in split.iterrows():
        assert row["prompt"] == " ".join(row["text"].split()[:row["prompt_words"]])


def test_a_safety_resistance_prompt_is_the_conversation_up_to_the_answer(tmp_path):
    _prepare(tasks.prepare_safety, tmp_path, pku_files(), _source(PKU),
             resistance={"source": None, "examples": 3})
    split = read_parquet(tmp_path / "out" / "resistance.parquet", data.PROMPT_COLUMNS)
    assert len(split) == 3
    for text, prompt in zip(split["text"], split["prompt"], strict=True):
        assert prompt.endswith(" ASSISTANT:") and text.startswith(prompt)
    for name in ("positive", "negative"):
        pool = read_parquet(tmp_path / "out" / f"{name}.parquet", data.PROMPT_COLUMNS)
        assert all(t.startswith(p) and p.endswith(" ASSISTANT:")
                   for t, p in zip(pool["text"], pool["prompt"], strict=True))


@pytest.mark.parametrize("resistance,message", [
    ({"source": "nyt", "examples": 4},
     r"^data\.resistance\.source is 'nyt', but a hub task .* set data\.resistance\.source to "
     r"null$"),
    ({"source": None, "examples": 18},
     r"^data\.resistance\.examples \(18\) and data\.pretrain_eval \(2\) leave no pretraining "
     r"text: only 20 examples of stanfordnlp/imdb@main .* split 'train'"),
])
def test_a_resistance_split_the_dataset_cannot_hold_names_its_key(tmp_path, resistance,
                                                                 message):
    with pytest.raises(ValueError, match=message):
        _prepare(tasks.prepare_imdb, tmp_path, imdb_files(), _source(IMDB),
                 resistance=resistance)
    _prepare(tasks.prepare_imdb, tmp_path, imdb_files(), _source(IMDB),
             resistance={"source": None, "examples": 17})
