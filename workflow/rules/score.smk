# Stage: VADER sentiment of every response; a response is positive when compound >= threshold.

# About 50 ms a cell: on a cluster these run on the submit host instead of as submissions.
localrules:
    score,



rule score:
    input:
        f"{CELL}/generations.parquet",
    output:
        f"{CELL}/scores.parquet",
    params:
        threshold=config["scoring"]["threshold"],
        config_hash=lambda w: config_hash(upstream_slice(w, through="score")),
        code=CODE["score"],
    resources:
        mem_mb=mem_mb("score"),
        runtime=runtime("score"),
    log:
        f"{LOGS}/score/{{model}}/pt{{tokens}}/{{algorithm}}/pos{{positive}}/neg{{negative}}/seed{{seed}}.log",
    run:
        step("score", log, generations=input[0], out=output[0], threshold=params.threshold,
             config_hash=params.config_hash)
