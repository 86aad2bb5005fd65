# Stage: the task's scorer (`scoring.scorer`) on every response, and on the data splits.

# On the CPU a cell's scoring takes well under a second (VADER: about 50 ms): on a cluster these
# run on the submit host instead of as submissions. A scorer on cuda (the paper's RoBERTa
# classifier, the 7B cost model) is a cluster job of its own.
if config["scoring"]["device"] == "cpu":

    localrules:
        score,
        score_splits,


rule score:
    input:
        unpack(scorer_inputs),
        generations=f"{CELL}/generations.parquet",
    output:
        f"{CELL}/scores.parquet",
    params:
        scoring=config["scoring"],
        cache=HUB_CACHE,
        config_hash=lambda w: config_hash(grid.depends_on(config, cell_of(w), "score")),
        code=CODE["score"],
    threads: THREADS
    resources:
        mem_mb=mem_mb("score"),
        runtime=runtime("score"),
        gpu=gpus("scoring"),
    log:
        f"{LOGS}/score/{CELL_LOG}.log",
    run:
        step("score", log, threads, generations=input.generations, out=output[0],
             **params.scoring, cache=params.cache, config_hash=params.config_hash)


rule score_splits:
    input:
        unpack(scorer_inputs),
        splits=expand(SPLIT, split=["positive", "negative", "prompts", "pretrain_eval",
                                    "positive_eval", "negative_eval"]),
    output:
        SPLIT_SCORES,
    params:
        scoring=config["scoring"],
        cache=HUB_CACHE,
        code=CODE["score_splits"],
    threads: THREADS
    resources:
        mem_mb=mem_mb("score"),
        runtime=runtime("score"),
        gpu=gpus("scoring"),
    log:
        f"{LOGS}/score_splits.log",
    run:
        splits = {Path(p).stem: p for p in input.splits}
        step("score_splits", log, threads, splits=splits, out=output[0], **params.scoring,
             cache=params.cache)
