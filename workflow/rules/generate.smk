# Stage: responses of a cell's model (base, aligned or inverted) to the held-out prompts.


rule generate:
    input:
        model=lambda w: at(cell_of(w).model_path()),
        prompts=SPLIT.format(split="prompts"),
    output:
        f"{CELL}/generations.parquet",
    params:
        cell=lambda w: cell_of(w).row(),
        sampling={k: v for k, v in config["generation"].items()
                  if k not in ("batch_size", "device", "cells")},
        batch_size=config["generation"]["batch_size"],
        device=config["generation"]["device"],
        config_hash=lambda w: config_hash(grid.depends_on(config, cell_of(w), "generate")),
        code=CODE["generate"],
    log:
        f"{LOGS}/generate/{CELL_LOG}.log",
    threads: THREADS
    resources:
        mem_mb=mem_mb("generate"),
        runtime=runtime("generate"),
        gpu=gpus("generation"),
    run:
        step("generate", log, threads, model=input.model, prompts=input.prompts, out=output[0],
             cell=params.cell, sampling=params.sampling, batch_size=params.batch_size,
             device=params.device, seed=params.cell["seed"], config_hash=params.config_hash)
