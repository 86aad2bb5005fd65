# Stage: alignment on P positive examples, one rule per algorithm, each writing
# models/<task>/<algorithm>/...; later rules take any {algorithm}. Along P the models form a
# training chain when the schedule allows it (elasticity.chains; the plan says which).


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
        gpus=config["align"]["gpus"],
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
        step("finetune", log, threads, model=input.start, pool=input.pool,
             out=output[0], examples=params.examples, previous=params.previous,
             trainer=params.trainer, device=params.device, gpus=params.gpus,
             mem_mb=resources.mem_mb, seed=params.seed, stage="align")
