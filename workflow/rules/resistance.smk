# Experiment `resistance` (§5.1, App. B.1 and E): forward vs. inverse alignment between slices
# of one SFT chain on held-out text (data.resistance); one job per seed does every slice,
# answer set, pair training and divergence (elasticity.resistance), one job tables the seeds.

localrules:
    resistance_table,


RESISTANCE_DIR = f"{OUT}/resistance"
RESISTANCE_SEED = f"{RESISTANCE_DIR}/seed{{seed}}.parquet"
RESISTANCE_TABLE = f"{RESISTANCE_DIR}/table.parquet"
RESISTANCE_HTML = f"{RESISTANCE_DIR}/table.html"
RESISTANCE_CLAIMS = f"{RESISTANCE_DIR}/claims.parquet"
RESISTANCE_FIGURE = f"{RESISTANCE_DIR}/resistance.png"
EXPERIMENT_CLAIMS["resistance"] = RESISTANCE_CLAIMS
EXPERIMENT_TARGETS["resistance"] = [RESISTANCE_TABLE, RESISTANCE_HTML, RESISTANCE_CLAIMS,
                                    RESISTANCE_FIGURE]


rule resistance:
    input:
        # Named as a fine-tuning job's start model: the resources read its size from it.
        start=resistance_base,
        split=SPLIT.format(split="resistance"),
    output:
        RESISTANCE_SEED,
    params:
        slices=config["resistance"]["slices"],
        trainer=config["align"]["sft"],
        sampling={k: config["generation"][k]
                  for k in ("max_new_tokens", "temperature", "top_p", "top_k")},
        generation_batch_size=config["generation"]["batch_size"],
        likelihood_batch_size=config["likelihood"]["batch_size"],
        max_tokens=config["pretraining"]["seq_len"],
        device=config["align"]["device"],
        code=CODE["resistance"],
    wildcard_constraints:
        seed=r"\d+",
    log:
        f"{LOGS}/resistance/seed{{seed}}.log",
    threads: THREADS
    resources:
        mem_mb=mem_mb("finetune"),
        runtime=runtime("finetune"),
        gpu=gpus("align"),
    run:
        step("resistance", log, threads, base=input.start, split=input.split, out=output[0],
             seed=int(wildcards.seed), slices=params.slices, trainer=params.trainer,
             sampling=params.sampling, generation_batch_size=params.generation_batch_size,
             likelihood_batch_size=params.likelihood_batch_size, max_tokens=params.max_tokens,
             device=params.device)


rule resistance_table:
    input:
        expand(RESISTANCE_SEED, seed=config["resistance"]["seed"]),
    output:
        table=RESISTANCE_TABLE,
        html=report(RESISTANCE_HTML, caption="../report/resistance.rst", category="Resistance"),
        claims=RESISTANCE_CLAIMS,
        figure=report(RESISTANCE_FIGURE, caption="../report/resistance.rst",
                      category="Resistance"),
    params:
        model=config["resistance"]["model"],
        interval=config["rebound"]["interval"],
        resamples=config["rebound"]["resamples"],
        code=CODE["resistance_table"],
    log:
        f"{LOGS}/resistance/table.log",
    run:
        step("resistance_table", log, results=list(input), out_table=output.table,
             out_html=output.html, out_claims=output.claims, out_figure=output.figure,
             model=params.model, interval=params.interval, resamples=params.resamples)
