# Stage: all cells of the experiment in one table, one row per cell, and the base models.

# Seconds of pandas: not worth a cluster submission.
localrules:
    aggregate,



rule aggregate:
    input:
        scores=all_cells("scores"),
        bases=all_checkpoints(),
    output:
        rows=RESPONSES,
        summary=SUMMARY,
        bases=BASE_TABLE,
    params:
        code=CODE["aggregate"],
    log:
        f"{LOGS}/aggregate.log",
    run:
        step("aggregate", log, scores=list(input.scores), bases=list(input.bases),
             out_rows=output.rows, out_summary=output.summary, out_bases=output.bases)
