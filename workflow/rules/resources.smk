# What a job asks a cluster for, from its step and its model: a base plus a cost per model
# parameter. A retry (attempt 2, 3, ...) asks for proportionally more memory and time.
# The parameter count is read from the config.json of the model the job loads, whatever its
# architecture (elasticity.pretrained.parameters_from_config); until an earlier job has written
# that model, a dry run shows the resource as <TBD> and the job asks when it is scheduled.

import json

from elasticity.models import parameters_from_config

STEP_COST = {  # step: (base MB, bytes per parameter, base minutes, minutes per 1e8 parameters)
    "pretrain": (2000, 20, 60, 60),
    "finetune": (2000, 20, 30, 30),
    "generate": (2000, 6, 20, 10),
    "score": (2000, 6, 10, 10),
    "likelihood": (2000, 8, 10, 10),
}
# The input holding the model a step loads (pretraining builds a scratch model instead).
MODEL_INPUT = {"finetune": "start", "generate": "model", "likelihood": "model",
               "score": "scorer"}


def scratch_parameters(model: str) -> int:
    """A scratch model's size from its LlamaConfig fields (the workflow builds it as a Llama)."""
    arch = config["models"][model]
    d, layers, ff = arch["hidden_size"], arch["num_hidden_layers"], arch["intermediate_size"]
    return config["tokenizer"]["vocab_size"] * d + layers * (4 * d * d + 3 * d * ff)


def job_parameters(step: str, w, input) -> int:
    if step == "pretrain":
        return scratch_parameters(w.model)
    name = MODEL_INPUT[step]
    if name not in input.keys():
        return 0  # a scorer without a model of its own (VADER)
    model_dir = input[name]
    if name == "scorer":  # the scorer's hub manifest says where its snapshot is
        model_dir = manifest_path(model_dir)
    try:
        return parameters_from_config(model_dir)
    except FileNotFoundError:
        # Named after the input itself: Snakemake's dry run then shows <TBD> for this resource.
        raise FileNotFoundError(2, "not written yet", input[name]) from None


def manifest_path(manifest: str) -> str:
    try:
        return json.loads(Path(manifest).read_text())["path"]
    except FileNotFoundError:
        raise FileNotFoundError(2, "not downloaded yet", manifest) from None


def mem_mb(step: str):
    base, per_param, _, _ = STEP_COST[step]
    return lambda w, input, attempt: attempt * int(
        base + per_param * job_parameters(step, w, input) / 1e6)


def runtime(step: str):
    _, _, base, per_1e8 = STEP_COST[step]
    return lambda w, input, attempt: attempt * int(
        base + per_1e8 * job_parameters(step, w, input) / 1e8)


def gpus(section: str) -> int:
    """The GPUs of a job whose config section runs on cuda (`gpus` where the section has it);
    none otherwise."""
    if config[section]["device"] != "cuda":
        return 0
    return config[section].get("gpus", 1)
