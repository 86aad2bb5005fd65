# Experiment `mitigation` (App. C.2): the inverse stage replays a fraction r of the aligning
# examples (cells with field `replay`, trained by invert_sft); N½ and the claims against r.

localrules:
    mitigation,


MITIGATION_DIR = f"{OUT}/mitigation"
EXPERIMENT_CLAIMS["mitigation"] = f"{MITIGATION_DIR}/claims.parquet"
MITIGATION_OUTPUTS = {
    "scores": f"{MITIGATION_DIR}/scores.parquet",
    "claims": EXPERIMENT_CLAIMS["mitigation"],
    "figure": f"{MITIGATION_DIR}/mitigation.png",
}
EXPERIMENT_TARGETS["mitigation"] = list(MITIGATION_OUTPUTS.values())


rule mitigation:
    input:
        SUMMARY,
    output:
        scores=MITIGATION_OUTPUTS["scores"],
        claims=MITIGATION_OUTPUTS["claims"],
        figure=report(MITIGATION_OUTPUTS["figure"], caption="../report/mitigation.rst",
                      category="Open questions"),
    params:
        cells=[c.row() for c in grid.experiment_cells(config, "mitigation")],
        interval=config["rebound"]["interval"],
        resamples=config["rebound"]["resamples"],
        code=CODE["mitigation"],
    log:
        f"{LOGS}/mitigation.log",
    run:
        step("mitigation", log, summary=input[0], out_scores=output.scores,
             out_claims=output.claims, out_figure=output.figure, cells=params.cells,
             interval=params.interval, resamples=params.resamples)
