# Experiment `rebound` (§5.2-5.3): the paper's Fig. 4-6, registered for `snakemake --report`.

localrules:
    plot_rebound,
    plot_size,
    plot_pretraining,


REBOUND_FIGURES = {name: f"{OUT}/figures/{name}.png"
                   for name in ("fig4_rebound", "fig5_size", "fig6_pretraining")}
EXPERIMENT_TARGETS["rebound"] = [SUMMARY, BASE_TABLE, SPLIT_SCORES, *REBOUND_FIGURES.values()]


rule plot_rebound:
    input:
        SUMMARY,
    output:
        report(REBOUND_FIGURES["fig4_rebound"], caption="../report/fig4_rebound.rst",
               category="Rebound"),
    params:
        task=config["task"],
        interval=config["rebound"]["interval"],
        code=CODE["plot_rebound"],
    log:
        f"{LOGS}/rebound/fig4_rebound.log",
    run:
        step("plot_rebound", log, summary=input[0], out=output[0], task=params.task,
             interval=params.interval)


rule plot_size:
    input:
        SUMMARY,
    output:
        report(REBOUND_FIGURES["fig5_size"], caption="../report/fig5_size.rst",
               category="Rebound"),
    params:
        task=config["task"],
        axis=config["grid"]["size_axis"],
        interval=config["rebound"]["interval"],
        code=CODE["plot_axis"],
    log:
        f"{LOGS}/rebound/fig5_size.log",
    run:
        bases = [dict(model=m, pretrain_tokens=params.axis["pretrain_tokens"])
                 for m in params.axis["model"]]
        step("plot_axis", log, summary=input[0], out=output[0], task=params.task,
             hue="model", bases=bases, title="Rebound by model size",
             interval=params.interval)


rule plot_pretraining:
    input:
        SUMMARY,
    output:
        report(REBOUND_FIGURES["fig6_pretraining"], caption="../report/fig6_pretraining.rst",
               category="Rebound"),
    params:
        task=config["task"],
        axis=config["grid"]["pretraining_axis"],
        interval=config["rebound"]["interval"],
        code=CODE["plot_axis"],
    log:
        f"{LOGS}/rebound/fig6_pretraining.log",
    run:
        bases = [dict(model=params.axis["model"], pretrain_tokens=t)
                 for t in params.axis["pretrain_tokens"]]
        step("plot_axis", log, summary=input[0], out=output[0], task=params.task,
             hue="pretrain_tokens", bases=bases, title="Rebound by pretraining volume",
             interval=params.interval)
