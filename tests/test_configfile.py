"""Strict config files: errors with file and line; merging as Snakemake's --configfile does."""

from __future__ import annotations

import copy
import re

import pytest
from snakemake.utils import update_config

from elasticity.configfile import ConfigFileError, load_yaml, merge


def _write(tmp_path, text: str):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_a_valid_file_loads(tmp_path):
    path = _write(tmp_path, "base: &base {lr: 0.1, steps: 3}\nrun:\n  <<: *base\n  lr: 0.2\n")
    assert load_yaml(path) == {"base": {"lr": 0.1, "steps": 3}, "run": {"lr": 0.2, "steps": 3}}


def test_a_syntax_error_names_file_line_and_column(tmp_path):
    path = _write(tmp_path, "a: 1\nb: x: y\nc: 3\n")
    with pytest.raises(ConfigFileError, match=rf"^{re.escape(str(path))}:2:5: mapping values "
                                              r"are not allowed here$"):
        load_yaml(path)


def test_a_missing_colon_also_names_the_line_of_the_cause(tmp_path):
    path = _write(tmp_path, "a: 1\nb: 2\nc\nd: 4\n")
    with pytest.raises(ConfigFileError) as raised:
        load_yaml(path)
    # PyYAML notices it on line 4; the key without a colon is on line 3.
    assert str(raised.value) == (f"{path}:4:1: could not find expected ':' "
                                 "(while scanning a simple key on line 3)")


@pytest.mark.parametrize("text, key, line, first", [
    ("seed: 1\nsteps: 2\nseed: 3\n", "seed", 3, 1),
    ("grid:\n  models: [a]\n  seeds: [1]\n\n  models: [b]\ntop: 1\n", "models", 5, 2),
    ("runs:\n  - {lr: 1, lr: 2}\n", "lr", 2, 2),
    ("1: a\n2: b\n1: c\n", "1", 3, 1),
])
def test_a_duplicate_key_names_both_lines(tmp_path, text, key, line, first):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigFileError) as raised:
        load_yaml(path)
    assert str(raised.value) == (f"{path}:{line}: duplicate key '{key}' "
                                 f"(first defined on line {first})")


def test_equal_keys_in_different_mappings_are_fine(tmp_path):
    path = _write(tmp_path, "a: {seed: 1}\nb: {seed: 2}\n")
    assert load_yaml(path) == {"a": {"seed": 1}, "b": {"seed": 2}}


@pytest.mark.parametrize("text, found", [("- a\n- b\n", "a list"), ("", "an empty document"),
                                         ("just text\n", "a str")])
def test_the_top_level_must_be_a_mapping(tmp_path, text, found):
    path = _write(tmp_path, text)
    with pytest.raises(ConfigFileError, match=rf"^{re.escape(str(path))}: .*found {found}$"):
        load_yaml(path)


BASE = {
    "experiment": "default",
    "models": {"tiny": {"hidden_size": 64, "layers": 2}, "small": {"hidden_size": 128}},
    "grid": {"seeds": [0, 1, 2], "algorithms": ["sft"], "axes": {"tokens": [1, 2]}},
    "compute": {"threads": 2, "device": "cpu"},
    "scalar_then_mapping": 3,
    "mapping_then_scalar": {"a": 1},
    "kept_under_empty": 5,
}
OVERRIDE = {
    "experiment": "smoke",
    "models": {"tiny": {"layers": 1}, "new": {"hidden_size": 32}},
    "grid": {"seeds": [7], "axes": {"positive": [4]}},
    "compute": {"device": None},
    "scalar_then_mapping": {"b": 2},
    "mapping_then_scalar": 0,
    "kept_under_empty": {},
    "added": {"x": {"y": [1]}},
}


def test_merge_agrees_with_snakemakes_configfile_update():
    base, override = copy.deepcopy(BASE), copy.deepcopy(OVERRIDE)
    expected = copy.deepcopy(BASE)
    update_config(expected, copy.deepcopy(OVERRIDE))

    merged = merge(base, override)

    assert merged == expected
    assert merged["models"]["tiny"] == {"hidden_size": 64, "layers": 1}  # merged key by key
    assert merged["grid"]["seeds"] == [7]  # a list is replaced, not extended
    assert merged["kept_under_empty"] == 5
    assert (base, override) == (BASE, OVERRIDE)  # the inputs are untouched...
    merged["grid"]["seeds"].append(8)
    merged["models"]["small"]["hidden_size"] = 0
    assert (base, override) == (BASE, OVERRIDE)  # ...and share nothing with the result
