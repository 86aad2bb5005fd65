# What a job asks a cluster for, from its step and its model: a base plus a cost per model
# parameter. A retry (attempt 2, 3, ...) asks for proportionally more memory and time.

STEP_COST = {  # step: (base MB, bytes per parameter, base minutes, minutes per 1e8 parameters)
    "pretrain": (2000, 20, 60, 60),
    "finetune": (2000, 20, 30, 30),
    "generate": (2000, 6, 20, 10),
    "score": (1000, 0, 10, 0),
    "likelihood": (2000, 8, 10, 10),
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
