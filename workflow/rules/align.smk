# Stage: alignment on P positive examples, one rule per algorithm, each writing
# models/<task>/<algorithm>/...; later rules take any {algorithm}. Along P the models form a
# training chain when the schedule allows it (elasticity.chains; the plan says which).


def link(stage: str, algorithm: str):
    """Input function of a fine-tuning link: the model the stage starts from and, in a chain,
    the previous link it continues."""

    def inputs(w) -> dict[str, object]:
        cell = cell_of(w, algorithm=algorithm, **({"negative": 0} if stage == "align" else {}))
        previous = chains.previous_link(config, cell, stage)
        return {"start": at(chains.start_model(cell, stage).model_path()),
                "previous": [at(previous.model_path())] if previous else []}

    return inputs


def previous_link_path(stage: str, algorithm: str):
    return lambda w, input: input.previous[0] if input.previous else None


rule align_sft:
    input:
        unpack(link("align", "sft")),
        pool=SPLIT.format(split="positive"),
    output:
        directory(at(grid.ALIGNED_MODEL.replace("{algorithm}", "sft"))),
    params:
        examples=lambda w: int(w.positive),
        previous=previous_link_path("align", "sft"),
        trainer=config["align"]["sft"],
        device=config["align"]["device"],
        seed=lambda w: int(w.seed),
        code=CODE["finetune"],
    log:
        f"{LOGS}/align/sft/{{task}}/{{model}}/pt{{pretrain_tokens}}/pos{{positive}}/seed{{seed}}.log",
    threads: THREADS
    resources:
        mem_mb=mem_mb("finetune"),
        runtime=runtime("finetune"),
        gpu=gpus("align"),
    run:
        step("finetune", log, threads, model=input.start, pool=input.pool, out=output[0],
             examples=params.examples, previous=params.previous, trainer=params.trainer,
             device=params.device, seed=params.seed)
