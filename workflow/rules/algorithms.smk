# Experiment `algorithms` (App. B.2, Fig. 7 and 9): SFT alignment on P positive examples, then
# the inverse stage on N negative examples by each algorithm (invert.smk); one P x N heatmap
# per algorithm and base, the curves by model size, and the claims per algorithm.

localrules:
    plot_algorithms,
    plot_algorithm_sizes,
    ablation_claims,


# An experiment's cells, as the summary's rows carry them (the summary holds every experiment).
ABLATION_CELLS = {name: [c.row() for c in grid.experiment_cells(config, name)]
                  for name in ("algorithms", "reverse")}
ABLATION_CLAIMS = f"{OUT}/claims/{{experiment}}.parquet"
EXPERIMENT_CLAIMS["algorithms"] = ABLATION_CLAIMS.format(experiment="algorithms")
EXPERIMENT_TARGETS["algorithms"] = [
    *(FIGURE.format(metric=m, figure=f) for m in FIGURE_METRICS
      for f in ("fig7_algorithms", "fig9_algorithm_sizes")),
    EXPERIMENT_CLAIMS["algorithms"],
]


rule plot_algorithms:
    input:
        SUMMARY,
    output:
        report(FIGURE.replace("{figure}", "fig7_algorithms"),
               caption="../report/fig7_algorithms.rst", category="Algorithms",
               subcategory="{metric}"),
    params:
        task=config["task"],
        cells=ABLATION_CELLS["algorithms"],
        interval=config["rebound"]["interval"],
        code=CODE["plot_algorithms"],
    log:
        f"{LOGS}/algorithms/fig7_{{metric}}.log",
    run:
        step("plot_algorithms", log, summary=input[0], out=output[0], task=params.task,
             metric=wildcards.metric, cells=params.cells, interval=params.interval)


rule plot_algorithm_sizes:
    input:
        SUMMARY,
    output:
        report(FIGURE.replace("{figure}", "fig9_algorithm_sizes"),
               caption="../report/fig9_algorithm_sizes.rst", category="Algorithms",
               subcategory="{metric}"),
    params:
        task=config["task"],
        cells=ABLATION_CELLS["algorithms"],
        interval=config["rebound"]["interval"],
        code=CODE["plot_algorithm_sizes"],
    log:
        f"{LOGS}/algorithms/fig9_{{metric}}.log",
    run:
        step("plot_algorithm_sizes", log, summary=input[0], out=output[0], task=params.task,
             metric=wildcards.metric, cells=params.cells, interval=params.interval)


# The claims of the algorithms and the reverse experiments, from their own cells.
rule ablation_claims:
    input:
        SUMMARY,
    output:
        ABLATION_CLAIMS,
    wildcard_constraints:
        experiment="algorithms|reverse",
    params:
        cells=lambda w: ABLATION_CELLS[w.experiment],
        interval=config["rebound"]["interval"],
        resamples=config["rebound"]["resamples"],
        code=CODE["ablation_claims"],
    log:
        f"{LOGS}/{{experiment}}/claims.log",
    run:
        step("ablation_claims", log, summary=input[0], out=output[0],
             experiment=wildcards.experiment, cells=params.cells, interval=params.interval,
             resamples=params.resamples)
