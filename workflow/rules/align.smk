# Stage: forward alignment, SFT on the first volume of a cell's first pool (the positive pool;
# the negative one in the reverse order), writing models/<task>/sft/.../<first>/.../aligned.
# Every second-stage algorithm starts from these models (App. B.2). Along the volumes the
# models form a training chain when the schedule allows it (elasticity.chains; the plan says
# which).


rule align_sft:
    input:
        unpack(link("align", "sft")),
    output:
        directory(at(grid.ALIGNED_MODEL)),
    params:
        examples=lambda w: link_cell(w, "align", "sft").volume("align"),
        previous=previous_link_path("align", "sft"),
        algorithm="sft",
        trainer=config["align"]["sft"],
        device=config["align"]["device"],
        gpus=config["align"]["gpus"],
        seed=lambda w: int(w.seed),
        code=CODE["finetune"],
    log:
        f"{LOGS}/align/sft/{{task}}/{{model}}/pt{{pretrain_tokens}}/{{first}}/seed{{seed}}.log",
    threads: THREADS
    resources:
        mem_mb=mem_mb("finetune"),
        runtime=runtime("finetune"),
        gpu=gpus("align"),
    run:
        step("finetune", log, threads, model=input.start, pool=input.pool, out=output[0],
             mem_mb=resources.mem_mb, stage="align",
             **{k: params[k] for k in FINETUNE_PARAMS})
