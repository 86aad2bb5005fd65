# Stage: all cells of the grid in one table, one row per cell, and the base models.

# Seconds of pandas: not worth a cluster submission.
localrules:
    aggregate,


CELLS = grid.cells(config)
SAMPLED = [c for c in CELLS if grid.sampled(config, c)]


rule aggregate:
    input:
        scores=[f"{OUT}/{c.directory()}/scores.parquet" for c in SAMPLED],
        likelihoods=[f"{OUT}/{c.directory()}/likelihood.parquet" for c in CELLS],
        bases=[BASE_MODEL.format(model=m, pretrain_tokens=t) for m, t in grid.checkpoints(config)],
    output:
        rows=RESPONSES,
        summary=SUMMARY,
        bases=BASE_TABLE,
    params:
        cells=[c.row() for c in CELLS],
        sampled=[c.row() for c in SAMPLED],
        code=CODE["aggregate"],
    log:
        f"{LOGS}/aggregate.log",
    run:
        step("aggregate", log, scores=[*input.scores], likelihoods=[*input.likelihoods],
             cells=params.cells, sampled=params.sampled, bases=[*input.bases],
             out_rows=output.rows, out_summary=output.summary, out_bases=output.bases)
