# Stage: inverse alignment on N negative examples (N > 0; the N = 0 cell is the aligned model),
# one rule per algorithm. Along N the models form a training chain that starts from the aligned
# model when the schedule allows it (elasticity.chains).


rule invert_sft:
    input:
        unpack(link("invert", "sft")),
        pool=SPLIT.format(split="negative"),
    output:
        directory(at(grid.INVERTED_MODEL.replace("{algorithm}", "sft"))),
    params:
        examples=lambda w: int(w.negative),
        previous=previous_link_path("invert", "sft"),
        trainer=config["invert"]["sft"],
        device=config["invert"]["device"],
        gpus=config["invert"]["gpus"],
        seed=lambda w: int(w.seed),
        code=CODE["finetune"],
    log:
        f"{LOGS}/invert/sft/{{task}}/{{model}}/pt{{pretrain_tokens}}/pos{{positive}}/neg{{negative}}/seed{{seed}}.log",
    threads: THREADS
    resources:
        mem_mb=mem_mb("finetune"),
        runtime=runtime("finetune"),
        gpu=gpus("invert"),
    run:
        step("finetune", log, threads, model=input.start, pool=input.pool,
             out=output[0], examples=params.examples, previous=params.previous,
             trainer=params.trainer, device=params.device, gpus=params.gpus,
             mem_mb=resources.mem_mb, seed=params.seed, stage="invert")
