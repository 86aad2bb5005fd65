# Stage: responses of a cell's model (base, aligned or inverted) to the held-out prompts.


rule generate:
    input:
        model=model_of_cell,
        prompts=SPLIT.format(split="prompts"),
    output:
        f"{CELL}/generations.parquet",
    params:
        cell=cell_of,
        sampling={k: v for k, v in config["generation"].items()
                  if k not in ("batch_size", "device")},
        batch_size=config["generation"]["batch_size"],
        device=config["generation"]["device"],
        seed=lambda w: int(w.seed),
        config_hash=lambda w: config_hash(upstream_slice(w, through="generate")),
        code=CODE["generate"],
    log:
        f"{LOGS}/generate/{{model}}/pt{{tokens}}/{{algorithm}}/pos{{positive}}/neg{{negative}}/seed{{seed}}.log",
    threads: THREADS
    resources:
        mem_mb=mem_mb("generate"),
        runtime=runtime("generate"),
        gpu=gpus("generation"),
    run:
        step("generate", log, threads, model=input.model, prompts=input.prompts, out=output[0],
             cell=params.cell, sampling=params.sampling, batch_size=params.batch_size,
             device=params.device, seed=params.seed, config_hash=params.config_hash)
