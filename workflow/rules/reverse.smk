# Experiment `reverse` (App. B.2, Fig. 8): SFT on negative data first, positive second; the same
# rules as the forward order (a cell's `order`: its paths name the volumes in training order,
# neg<N>/pos<P>). Its claims come from `ablation_claims` (algorithms.smk).

localrules:
    plot_reverse,


EXPERIMENT_CLAIMS["reverse"] = ABLATION_CLAIMS.format(experiment="reverse")
EXPERIMENT_TARGETS["reverse"] = [
    *(FIGURE.format(metric=m, figure="fig8_reverse") for m in FIGURE_METRICS),
    EXPERIMENT_CLAIMS["reverse"],
]


rule plot_reverse:
    input:
        SUMMARY,
    output:
        report(FIGURE.replace("{figure}", "fig8_reverse"), caption="../report/fig8_reverse.rst",
               category="Reverse order", subcategory="{metric}"),
    params:
        task=config["task"],
        cells=ABLATION_CELLS["reverse"],
        interval=config["rebound"]["interval"],
        code=CODE["plot_reverse"],
    log:
        f"{LOGS}/reverse/fig8_{{metric}}.log",
    run:
        step("plot_reverse", log, summary=input[0], out=output[0], task=params.task,
             metric=wildcards.metric, cells=params.cells, interval=params.interval)
