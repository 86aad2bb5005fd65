# Experiment `rebound` (§5.2-5.3): the paper's Fig. 4-6 for the sampled metric and for the
# preference margin, the compression rates along the chains, and the claims analysis, all
# registered for `snakemake --report`.

localrules:
    plot_rebound,
    plot_size,
    plot_pretraining,
    plot_compression,
    analyze,


# Fig. 6 needs a pretraining axis (`grid.pretraining_axis` may be null).
AXIS_FIGURES = ["fig4_rebound", "fig5_size"] + (
    ["fig6_pretraining"] if grid.pretraining_bases(config) else [])
REBOUND_FIGURES = [FIGURE.format(metric=m, figure=f) for m in FIGURE_METRICS
                   for f in AXIS_FIGURES]
COMPRESSION_FIGURE = f"{OUT}/figures/compression.png"
CLAIMS = f"{OUT}/claims.parquet"
CLAIMS_TABLE = f"{OUT}/claims.html"
# The report's landing page, written by the analysis (Snakefile, `report:`).
LANDING = f"{OUT}/report.rst"
ELASTICITY = f"{OUT}/elasticity_scores.parquet"
THEORY = f"{OUT}/theory_check.parquet"
EXPERIMENT_TARGETS["rebound"] = [SUMMARY, BASE_TABLE, SPLIT_SCORES, *REBOUND_FIGURES,
                                 COMPRESSION_FIGURE, CLAIMS, CLAIMS_TABLE, LANDING]


# The summary holds every experiment's cells; rebound's steps read its own.
REBOUND_CELLS = [c.row() for c in grid.experiment_cells(config, "rebound")]



rule plot_rebound:
    input:
        summary=SUMMARY,
        split_scores=SPLIT_SCORES,
    output:
        report(FIGURE.replace("{figure}", "fig4_rebound"),
               caption="../report/fig4_rebound.rst", category="Rebound",
               subcategory="{metric}"),
    params:
        task=config["task"],
        interval=config["rebound"]["interval"],
        cells=REBOUND_CELLS,
        code=CODE["plot_rebound"],
    log:
        f"{LOGS}/rebound/fig4_rebound_{{metric}}.log",
    run:
        step("plot_rebound", log, summary=input.summary, split_scores=input.split_scores,
             out=output[0], task=params.task, metric=wildcards.metric, interval=params.interval,
             experiment_cells=params.cells)


rule plot_size:
    input:
        summary=SUMMARY,
        split_scores=SPLIT_SCORES,
    output:
        report(FIGURE.replace("{figure}", "fig5_size"), caption="../report/fig5_size.rst",
               category="Rebound", subcategory="{metric}"),
    params:
        task=config["task"],
        bases=[dict(model=m, pretrain_tokens=t) for m, t in grid.size_bases(config)],
        interval=config["rebound"]["interval"],
        cells=REBOUND_CELLS,
        code=CODE["plot_axis"],
    log:
        f"{LOGS}/rebound/fig5_size_{{metric}}.log",
    run:
        bases = params.bases
        step("plot_axis", log, summary=input.summary, split_scores=input.split_scores,
             out=output[0], task=params.task, metric=wildcards.metric, hue="model", bases=bases,
             title="Rebound by model size", interval=params.interval,
             experiment_cells=params.cells)


rule plot_pretraining:
    input:
        summary=SUMMARY,
        split_scores=SPLIT_SCORES,
    output:
        report(FIGURE.replace("{figure}", "fig6_pretraining"),
               caption="../report/fig6_pretraining.rst", category="Rebound",
               subcategory="{metric}"),
    params:
        task=config["task"],
        bases=[dict(model=m, pretrain_tokens=t) for m, t in grid.pretraining_bases(config)],
        interval=config["rebound"]["interval"],
        cells=REBOUND_CELLS,
        code=CODE["plot_axis"],
    log:
        f"{LOGS}/rebound/fig6_pretraining_{{metric}}.log",
    run:
        bases = params.bases
        step("plot_axis", log, summary=input.summary, split_scores=input.split_scores,
             out=output[0], task=params.task, metric=wildcards.metric, hue="pretrain_tokens", bases=bases,
             title="Rebound by pretraining volume", interval=params.interval,
             experiment_cells=params.cells)


rule plot_compression:
    input:
        SUMMARY,
    output:
        report(COMPRESSION_FIGURE, caption="../report/compression.rst", category="Theory"),
    params:
        task=config["task"],
        interval=config["rebound"]["interval"],
        cells=REBOUND_CELLS,
        code=CODE["plot_compression"],
    log:
        f"{LOGS}/rebound/compression.log",
    run:
        step("plot_compression", log, summary=input[0], out=output[0], task=params.task,
             interval=params.interval, experiment_cells=params.cells)


rule analyze:
    input:
        summary=SUMMARY,
        bases=BASE_TABLE,
        tokenizer=TOKENIZER,
        positive=SPLIT.format(split="positive"),
        experiment_claims=lambda w: [EXPERIMENT_CLAIMS[name] for name in config["experiments"]
                                     if name in EXPERIMENT_CLAIMS],
    output:
        claims=CLAIMS,
        elasticity=ELASTICITY,
        theory=THEORY,
        table=report(CLAIMS_TABLE, caption="../report/claims.rst", category="Claims"),
        landing=LANDING,
    params:
        settings=dict(run_name=config["name"], grid=config["grid"],
                      size_bases=[list(b) for b in grid.size_bases(config)],
                      pretraining_bases=[list(b) for b in grid.pretraining_bases(config)],
                      interval=config["rebound"]["interval"],
                      resamples=config["rebound"]["resamples"], experiment_cells=REBOUND_CELLS),
        code=CODE["analyze"],
    log:
        f"{LOGS}/rebound/analyze.log",
    run:
        step("analyze", log, summary=input.summary, bases=input.bases,
             tokenizer=input.tokenizer, positive_pool=input.positive,
             experiment_claims=[*input.experiment_claims],
             **{f"out_{name}": path for name, path in output.items()}, **params.settings)
