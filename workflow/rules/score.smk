# Stage: the task's scorer (`scoring.scorer`) on every response, and on the data splits.

# About 50 ms a cell: on a cluster these run on the submit host instead of as submissions.
localrules:
    score,
    score_splits,


rule score:
    input:
        f"{CELL}/generations.parquet",
    output:
        f"{CELL}/scores.parquet",
    params:
        scoring=config["scoring"],
        config_hash=lambda w: config_hash(grid.depends_on(config, cell_of(w), "score")),
        code=CODE["score"],
    resources:
        mem_mb=mem_mb("score"),
        runtime=runtime("score"),
    log:
        f"{LOGS}/score/{CELL_LOG}.log",
    run:
        step("score", log, generations=input[0], out=output[0], **params.scoring,
             config_hash=params.config_hash)


rule score_splits:
    input:
        expand(SPLIT, split=["positive", "negative", "prompts", "pretrain_eval", "positive_eval",
                             "negative_eval"]),
    output:
        SPLIT_SCORES,
    params:
        scoring=config["scoring"],
        code=CODE["score_splits"],
    log:
        f"{LOGS}/score_splits.log",
    run:
        splits = {Path(p).stem: p for p in input}
        step("score_splits", log, splits=splits, out=output[0], **params.scoring)
