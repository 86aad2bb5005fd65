# Experiment `threshold` (App. C.3): one model at many pretraining budgets (one pretraining
# chain), the rebound grid reduced to `threshold.positive` x `threshold.negative` on each; per
# budget the claims step's resistance statistic, and the budget at which it steps up.

localrules:
    threshold,


THRESHOLD_DIR = f"{OUT}/threshold"
EXPERIMENT_CLAIMS["threshold"] = f"{THRESHOLD_DIR}/claims.parquet"
THRESHOLD_OUTPUTS = {
    "statistic": f"{THRESHOLD_DIR}/statistic.parquet",
    "change": f"{THRESHOLD_DIR}/change_point.parquet",
    "claims": EXPERIMENT_CLAIMS["threshold"],
    "figure": f"{THRESHOLD_DIR}/threshold.png",
}
EXPERIMENT_TARGETS["threshold"] = list(THRESHOLD_OUTPUTS.values())


rule threshold:
    input:
        SUMMARY,
    output:
        statistic=THRESHOLD_OUTPUTS["statistic"],
        change=THRESHOLD_OUTPUTS["change"],
        claims=THRESHOLD_OUTPUTS["claims"],
        figure=report(THRESHOLD_OUTPUTS["figure"], caption="../report/threshold.rst",
                      category="Open questions"),
    params:
        cells=[c.row() for c in grid.experiment_cells(config, "threshold")],
        interval=config["rebound"]["interval"],
        resamples=config["rebound"]["resamples"],
        code=CODE["threshold"],
    log:
        f"{LOGS}/threshold.log",
    run:
        step("threshold", log, summary=input[0], out_statistic=output.statistic,
             out_change=output.change, out_claims=output.claims, out_figure=output.figure,
             cells=params.cells, interval=params.interval, resamples=params.resamples)
