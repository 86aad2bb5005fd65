# Stage: the likelihood metrics of a cell's model (compression rates, preference margin, KL to
# its base): one deterministic forward pass each, no sampling (elasticity.likelihood).


rule likelihood:
    input:
        unpack(likelihood_models),
        **{name: SPLIT.format(split=split) for name, split in LIKELIHOOD_SETS.items()},
        prompts=SPLIT.format(split="prompts"),
    output:
        f"{CELL}/likelihood.parquet",
    params:
        cell=lambda w: cell_of(w).row(),
        max_tokens=config["pretraining"]["seq_len"],
        batch_size=config["likelihood"]["batch_size"],
        device=config["likelihood"]["device"],
        config_hash=lambda w: config_hash(grid.depends_on(config, cell_of(w), "likelihood")),
        code=CODE["likelihood"],
    log:
        f"{LOGS}/likelihood/{CELL_LOG}.log",
    threads: THREADS
    resources:
        mem_mb=mem_mb("likelihood"),
        runtime=runtime("likelihood"),
        gpu=gpus("likelihood"),
    run:
        step("likelihood", log, threads, model=input.model, base=input.base, out=output[0],
             sets={name: input[name] for name in LIKELIHOOD_SETS}, prompts=input.prompts,
             cell=params.cell, max_tokens=params.max_tokens, batch_size=params.batch_size,
             device=params.device, config_hash=params.config_hash)
