"""Validation: every bad config stops with a message naming the key and what would be valid."""

from __future__ import annotations

import copy

import pytest

from elasticity import chains, grid
from elasticity import config as cfg

from .conftest import DEFAULT_CONFIG, SMOKE


def _with(change, base=DEFAULT_CONFIG) -> dict:
    config = copy.deepcopy(base)
    change(config)
    return config


def _error(config) -> str:
    with pytest.raises(cfg.ConfigError) as info:
        cfg.validate(config)
    return str(info.value)


def test_the_default_and_smoke_configs_are_valid():
    cfg.validate(DEFAULT_CONFIG)
    cfg.validate(SMOKE)


def test_an_unknown_key_is_named_with_the_allowed_ones():
    message = _error(_with(lambda c: c["generation"].update(topk=3)))
    assert "unknown config key(s) ['topk'] under 'generation'" in message
    assert "top_k" in message


def test_a_wrong_type_names_the_key_and_the_expected_type():
    message = _error(_with(lambda c: c["grid"].update(positive=[200, "lots"])))
    assert "config key 'grid.positive[1]' must be of type integer, got str 'lots'" in message


def test_a_misspelled_trainer_field_is_named_with_the_closest_valid_one():
    message = _error(_with(lambda c: c["align"]["sft"].update(learning_rat=0.1)))
    assert "align.sft.learning_rat is not a field of SFTConfig; did you mean 'learning_rate'?" \
        in message
    message = _error(_with(lambda c: c["pretraining"]["trainer"].update(warmup_step=3)))
    assert "pretraining.trainer.warmup_step is not a field of TrainingArguments" in message


def test_any_field_of_the_trainer_class_is_accepted():
    cfg.validate(_with(lambda c: c["invert"]["sft"].update(max_grad_norm=0.5,
                                                           label_smoothing_factor=0.1)))


def test_a_value_the_trainer_class_refuses_is_named():
    message = _error(_with(lambda c: c["align"]["sft"].update(lr_scheduler_type="constnt")))
    assert "align.sft: SFTConfig refuses these values" in message and "constnt" in message


@pytest.mark.parametrize("field", ["output_dir", "seed", "save_strategy", "max_steps"])
def test_a_field_the_workflow_owns_is_refused(field):
    message = _error(_with(lambda c: c["invert"]["sft"].update({field: 1})))
    assert f"invert.sft.{field} is set by the workflow and cannot be configured" in message


@pytest.mark.parametrize("change, key, value", [
    (lambda c: c["grid"].update(algorithm=["sft", "ppo"]), "grid.algorithm[1]", "ppo"),
    (lambda c: c["algorithms"].update(algorithm=["dpo", "orpo"]), "algorithms.algorithm[1]",
     "orpo"),
    (lambda c: c["scoring"].update(scorer="roberta"), "scoring.scorer", "roberta"),
    (lambda c: c.update(task="toxicity"), "task", "toxicity"),
    (lambda c: c.update(experiments=["rebound", "ablation"]), "experiments[1]", "ablation"),
])
def test_a_switch_without_an_implementation_is_refused(change, key, value):
    message = _error(_with(change))
    assert f"{key} is {value!r}, which has no implementation; known:" in message


@pytest.mark.parametrize("change, expected", [
    (lambda c: c.update(task="imdb"), "task 'imdb' reads a hub dataset: set data.dataset"),
    (lambda c: c["data"].update(dataset={"id": "stanfordnlp/imdb", "revision": "main",
                                         "train_split": "train", "test_split": "test"}),
     "data.dataset is set but task 'sentiment' reads data.source"),
    (lambda c: c["scoring"].update(scorer="cost-model"), "scorer 'cost-model' needs scoring.model"),
    (lambda c: c["scoring"].update(model={"id": "a/b", "revision": "main"}),
     "scoring.model is set but scorer 'vader' has no model"),
    (lambda c: c["invert"].update(gpus=2), "invert.gpus is 2 but invert.device is 'cpu'"),
    (lambda c: c["models"].update(big={"source": "pretrained", "checkpoints": [
        {"pretrain_tokens": 1, "id": "a/b", "path": "/x", "revision": "main"}]}),
     "models.big.checkpoints[0] must name exactly one source"),
    (lambda c: c["models"].update(big={"source": "pretrained", "checkpoints": [
        {"pretrain_tokens": 1, "id": "a/b"}]}), "`id` needs one"),
    (lambda c: c["models"].update(big={"source": "pretrained", "checkpoints": [
        {"pretrain_tokens": 1, "path": "/nonexistent/model"}]}),
     "models.big.checkpoints[0].path is '/nonexistent/model', which is not a model directory"),
    (lambda c: (c["models"].update(big={"source": "pretrained", "checkpoints": [
        {"pretrain_tokens": 1, "id": "a/b", "revision": "main"},
        {"pretrain_tokens": 2, "id": "a/c", "revision": "main"}]}),
        c["grid"]["size_axis"].update(model=["big"])),
     "set grid.size_axis.pretrain_tokens to one of [1, 2]"),
    (lambda c: (c["models"].update(big={"source": "pretrained", "checkpoints": [
        {"pretrain_tokens": 1, "id": "a/b", "revision": "main"}]}),
        c["grid"].update(pretraining_axis={"model": "big", "pretrain_tokens": [1, 5]})),
     "grid.pretraining_axis.pretrain_tokens [5] are not checkpoints of the pretrained model"),
    (lambda c: c["models"].update(big={"source": "pretrained", "checkpoints": [
        {"pretrain_tokens": 1, "id": "../../etc", "revision": "main"}]}), "models.big"),
    (lambda c: c["models"].update(big={"source": "pretrained", "hidden_size": 8}),
     "hidden_size"),
])
def test_sources_that_do_not_fit_together_are_named(change, expected):
    assert expected in _error(_with(change))


def test_a_volume_larger_than_its_pool_names_the_pool_and_its_size():
    message = _error(_with(lambda c: c["grid"].update(negative=[0, 5000])))
    assert ("grid.negative asks for 5000 examples but the negative pool (data.pools.negative) "
            "holds 1000") in message


def test_sampled_cells_with_no_value_in_the_grid_are_refused_naming_both_keys():
    message = _error(_with(lambda c: c["generation"].update(cells={"seed": [17, 18]})))
    assert "generation.cells.seed lists [17, 18], none of which grid.seed has" in message
    message = _error(_with(lambda c: c["generation"].update(cells={"model": ["micro-s"]})))
    assert "generation.cells" in message and "model" in message


def test_sampled_values_the_grid_lacks_are_ignored():
    config = _with(lambda c: c["grid"].update(seed=[0, 1]))
    config["generation"]["cells"] = {"seed": [1, 2, 17]}
    config["experiments"] = ["rebound"]
    cfg.validate(config)
    assert {c.seed for c in grid.cells(config) if grid.sampled(config, c)} == {1}


def test_sampled_cells_select_by_grid_value_and_keep_the_bases_of_their_seeds():
    config = _with(lambda c: c["generation"].update(cells={"seed": [1], "negative": [0, 60]}))
    picked = [c for c in grid.cells(config) if grid.sampled(config, c)]
    assert {c.seed for c in picked} == {1}
    assert {c.negative for c in picked} == {0, 60}
    assert any(c.is_base for c in picked)


def test_an_axis_naming_an_unknown_model_is_refused():
    message = _error(_with(lambda c: c["grid"]["pretraining_axis"].update(model="giant")))
    assert "grid.pretraining_axis.model names 'giant'" in message


def test_the_grid_derives_bases_chains_and_cells():
    threshold = [("micro-m", t) for t in DEFAULT_CONFIG["threshold"]["pretrain_tokens"]]
    assert grid.bases(DEFAULT_CONFIG) == sorted({("micro-l", 1600000), ("micro-m", 200000),
                                                 ("micro-m", 600000), ("micro-m", 1600000),
                                                 ("micro-s", 1600000), *threshold})
    assert grid.checkpoints(DEFAULT_CONFIG) == sorted({
        *((m, t) for m in ("micro-l", "micro-m", "micro-s") for t in (200000, 600000, 1600000)),
        *threshold})
    assert grid.previous_budget(DEFAULT_CONFIG, "micro-s", 600000) == 200000
    assert grid.previous_budget(DEFAULT_CONFIG, "micro-s", 200000) is None
    # micro-m's chain runs through the threshold axis's budgets too.
    assert grid.previous_budget(DEFAULT_CONFIG, "micro-m", 600000) == 400000
    assert grid.previous_budget(DEFAULT_CONFIG, "micro-m", 25000) is None
    cells = grid.experiment_cells(DEFAULT_CONFIG, "rebound")
    g = DEFAULT_CONFIG["grid"]
    assert len(cells) == len(set(cells)) == 5 * len(g["seed"]) * (
        1 + len(g["positive"]) * len(g["negative"]))


def test_cells_are_stored_once_across_experiments():
    every = grid.cells(DEFAULT_CONFIG)
    assert len(every) == len(set(every))
    parts = [set(grid.experiment_cells(DEFAULT_CONFIG, name)) for name in grid.GRID_EXPERIMENTS]
    assert set(every) == set.union(*parts)
    # The aligned model is every algorithm's N = 0 cell: stored once, as SFT.
    algorithms = parts[1]
    assert {c.algorithm for c in algorithms if not c.is_base and c.negative == 0} == {"sft"}
    assert {c.algorithm for c in algorithms} == {"none", "sft", "dpo", "kto", "simpo", "rloo"}
    # The rebound grid's sft cells of the size bases serve the algorithms experiment too.
    assert grid.Cell("sentiment", "micro-s", 1600000, "sft", 2000, 200, 4) in parts[0] & parts[1]


def test_a_reverse_cell_trains_negative_data_first_and_its_paths_say_so():
    cell = grid.Cell("sentiment", "micro-m", 1600000, "sft", 60, 200, 1, grid.REVERSE)
    assert cell in grid.cells(DEFAULT_CONFIG)
    assert cell.directory() == "cells/sentiment/micro-m/pt1600000/sft/neg200/pos60/seed1"
    assert cell.model_path().endswith("sft/micro-m/pt1600000/neg200/pos60/seed1/inverted")
    assert cell.aligned().model_path().endswith("sft/micro-m/pt1600000/neg200/seed1/aligned")
    assert (cell.pool("align"), cell.pool("invert")) == ("negative", "positive")
    assert grid.Cell.from_wildcards(cell.wildcards()) == cell
    forward = grid.Cell("sentiment", "micro-m", 1600000, "sft", 60, 200, 1)
    assert forward.directory().endswith("sft/pos60/neg200/seed1")
    assert grid.Cell.from_wildcards(forward.wildcards()) == forward
    with pytest.raises(ValueError, match="one pos<N> and one neg<N>"):
        grid.Cell.from_wildcards({**forward.wildcards(), "second": "pos20"})
    # Its first stage chains over the negative volumes, the second over the positive ones.
    later = grid.Cell("sentiment", "micro-m", 1600000, "sft", 200, 1000, 1, grid.REVERSE)
    assert chains.previous_link(DEFAULT_CONFIG, later, "align").negative == 200
    assert chains.previous_link(DEFAULT_CONFIG, later, "invert").positive == 60
    assert chains.previous_link(DEFAULT_CONFIG, cell, "invert") is None


def test_a_chain_runs_through_every_experiment_s_volumes():
    # micro-m at 1.6M tokens is on the Table 3 grid (fine N) and on the rebound grid (coarse
    # N): one chain per aligned model, through the union of both.
    cell = grid.Cell("sentiment", "micro-m", 1600000, "sft", 600, 200, 3)
    assert chains.previous_link(DEFAULT_CONFIG, cell, "invert").negative == 140
    only_rebound = grid.Cell("sentiment", "micro-m", 600000, "sft", 600, 200, 3)
    assert chains.previous_link(DEFAULT_CONFIG, only_rebound, "invert").negative == 60
    # Online RL never chains; preference algorithms chain along their own cells.
    rl = grid.Cell("sentiment", "micro-m", 1600000, "rloo", 2000, 200, 0)
    assert chains.previous_link(DEFAULT_CONFIG, rl, "invert") is None
    dpo = grid.Cell("sentiment", "micro-m", 1600000, "dpo", 2000, 200, 0)
    assert chains.previous_link(DEFAULT_CONFIG, dpo, "invert").negative == 60


def test_links_continue_the_next_smaller_volume_when_the_schedule_allows():
    cell = grid.Cell("sentiment", "micro-m", 600000, "sft", 2000, 200, 1)
    assert chains.chaining(DEFAULT_CONFIG, "align", "sft")[0]
    assert chains.previous_link(DEFAULT_CONFIG, cell, "align").positive == 600
    assert chains.previous_link(DEFAULT_CONFIG, cell, "invert").negative == 60
    first = grid.Cell("sentiment", "micro-m", 600000, "sft", 2000, 20, 1)
    assert chains.previous_link(DEFAULT_CONFIG, first, "invert") is None
    assert chains.start_model(first, "invert").model_path().endswith("pos2000/seed1/aligned")


@pytest.mark.parametrize("change, reason", [
    (lambda a: a["sft"].update(lr_scheduler_type="linear"),
     "depends on the total number of steps"),
    (lambda a: a["sft"].update(num_train_epochs=2), "num_train_epochs is 2, not 1"),
    (lambda a: a["sft"].update(per_device_train_batch_size=16), "are not multiples of the batch"),
    # Four GPUs take four batches of 20 a step: 200 is not a multiple of 80.
    (lambda a: a.update(gpus=4, device="cuda"), "not multiples of the batch (80 examples"),
])
def test_any_other_schedule_trains_every_cell_on_its_own(change, reason):
    config = _with(lambda c: change(c["align"]))
    chained, why = chains.chaining(config, "align", "sft")
    assert not chained and reason in why
    cell = grid.Cell("sentiment", "micro-m", 600000, "sft", 1000, 0, 1)
    assert chains.previous_link(config, cell, "align") is None


@pytest.mark.parametrize("change, expected", [
    # Preference pairs take their rejected responses from the other pool, one per example.
    (lambda c: c["data"]["pools"].update(positive=150),
     "algorithms.negative asks for 200 preference pairs for dpo, kto, simpo, whose rejected "
     "responses come from the positive pool (data.pools.positive), which holds 150"),
    (lambda c: c["reverse"].update(negative=[200, 5000]),
     "reverse.negative asks for 5000 examples but the negative pool (data.pools.negative) "
     "holds 1000"),
    (lambda c: c["algorithms"].update(model=["micro-s", "giant"]),
     "algorithms.model[1] names 'giant' but 'models' has no such entry"),
    (lambda c: c["resistance"].update(model="giant"), "resistance.model names 'giant'"),
    (lambda c: c["align"].update(dpo={"beta": 0.1}),
     "align.dpo: the first stage is SFT for every algorithm"),
    (lambda c: c["invert"].pop("kto"), "invert.kto is missing: algorithms.algorithm runs 'kto'"),
    (lambda c: c["invert"]["simpo"].update(cpo_alpha=1.0),
     "invert.simpo.cpo_alpha is set by the workflow and cannot be configured"),
    (lambda c: c["kl_table"].update(negative=[0]),
     "kl_table.negative lists no volume above 0"),
    (lambda c: c["resistance"].update(slices=900),
     "data.resistance.examples (800) is fewer than the 901 parts that resistance.slices (900)"),
    (lambda c: c["resistance"].update(slices=0), "resistance.slices is 0"),
    (lambda c: c["data"].update(resistance=None),
     "experiments lists 'resistance' but data.resistance is null"),
    (lambda c: c["data"].update(resistance={"source": "movie", "examples": 800}),
     "data.resistance.source"),
    (lambda c: c["data"].update(resistance={"source": "nyt", "examples": 90000}),
     "data.resistance.examples (90000) asks for more snippets than the"),
])
def test_an_experiment_its_data_cannot_feed_is_refused_naming_the_key(change, expected):
    assert expected in _error(_with(change))


def test_an_experiment_that_is_switched_off_is_not_checked():
    config = _with(lambda c: c.update(experiments=["rebound"]))
    config["algorithms"]["model"] = ["giant"]
    config["data"]["resistance"] = None
    cfg.validate(config)
    assert {c.algorithm for c in grid.cells(config)} == {"none", "sft"}
    assert all(c.order == grid.FORWARD for c in grid.cells(config))
