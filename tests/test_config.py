from __future__ import annotations

import copy

import pytest

from elasticity import config as cfg

from .conftest import DEFAULT_CONFIG


def _with(change) -> dict:
    config = copy.deepcopy(DEFAULT_CONFIG)
    change(config)
    return config


def _error(config) -> str:
    with pytest.raises(cfg.ConfigError) as info:
        cfg.validate(config)
    return str(info.value)


def test_the_default_and_smoke_configs_are_valid():
    import yaml

    from .conftest import SMOKE_CONFIG

    cfg.validate(DEFAULT_CONFIG)
    cfg.validate(yaml.safe_load(SMOKE_CONFIG.read_text()))


def test_an_unknown_key_is_named_with_the_allowed_ones():
    message = _error(_with(lambda c: c["align"].update(lr=0.1)))
    assert "unknown config key(s) ['lr'] under 'align'" in message
    assert "learning_rate" in message


def test_a_wrong_type_names_the_key_and_the_expected_type():
    message = _error(_with(lambda c: c["grid"].update(positive=[200, "lots"])))
    assert "config key 'grid.positive[1]' must be of type integer, got str 'lots'" in message
    message = _error(_with(lambda c: c["align"].update(learning_rate="fast")))
    assert "'align.learning_rate' must be of type number" in message


def test_a_volume_larger_than_its_pool_names_the_pool_and_its_size():
    message = _error(_with(lambda c: c["grid"].update(negative=[0, 5000])))
    assert ("grid.negative asks for 5000 examples but the negative pool (data.pools.negative) "
            "holds 1000") in message


def test_an_axis_naming_an_unknown_model_is_refused():
    message = _error(_with(lambda c: c["grid"]["pretraining_axis"].update(model="giant")))
    assert "grid.pretraining_axis.model names 'giant'" in message


def test_the_grid_derives_bases_chains_and_cells():
    assert cfg.bases(DEFAULT_CONFIG) == [("micro-l", 600000), ("micro-m", 150000),
                                         ("micro-m", 300000), ("micro-m", 600000),
                                         ("micro-s", 600000)]
    assert cfg.checkpoints(DEFAULT_CONFIG) == [(m, t) for m in ("micro-l", "micro-m", "micro-s")
                                              for t in (150000, 300000, 600000)]
    assert cfg.previous_budget(DEFAULT_CONFIG, "micro-m", 600000) == 300000
    assert cfg.previous_budget(DEFAULT_CONFIG, "micro-s", 600000) == 300000
    assert cfg.previous_budget(DEFAULT_CONFIG, "micro-m", 150000) is None
    cells = cfg.cells(DEFAULT_CONFIG)
    grid = DEFAULT_CONFIG["grid"]
    per_base_seed = 1 + len(grid["positive"]) * len(grid["negative"])
    assert len(cells) == 5 * len(grid["seeds"]) * per_base_seed
