# Stage: the paper's rebound figures, registered for `snakemake --report`.

localrules:
    plot_rebound,
    plot_size,
    plot_pretraining,



rule plot_rebound:
    input:
        SUMMARY,
    output:
        report(FIGURES[0], caption="../report/fig4_rebound.rst", category="Rebound"),
    params:
        task=config["task"],
        code=CODE["plots"],
    log:
        f"{LOGS}/plots/fig4_rebound.log",
    run:
        step("plot_rebound", log, summary=input[0], out=output[0], task=params.task)


rule plot_size:
    input:
        SUMMARY,
    output:
        report(FIGURES[1], caption="../report/fig5_size.rst", category="Rebound"),
    params:
        task=config["task"],
        axis=config["grid"]["size_axis"],
        code=CODE["plots"],
    log:
        f"{LOGS}/plots/fig5_size.log",
    run:
        bases = [dict(model=m, pretrain_tokens=params.axis["pretrain_tokens"])
                 for m in params.axis["models"]]
        step("plot_axis", log, summary=input[0], out=output[0], task=params.task,
             hue="model", bases=bases, title="Rebound by model size (bands: sd over seeds)")


rule plot_pretraining:
    input:
        SUMMARY,
    output:
        report(FIGURES[2], caption="../report/fig6_pretraining.rst", category="Rebound"),
    params:
        task=config["task"],
        axis=config["grid"]["pretraining_axis"],
        code=CODE["plots"],
    log:
        f"{LOGS}/plots/fig6_pretraining.log",
    run:
        bases = [dict(model=params.axis["model"], pretrain_tokens=t)
                 for t in params.axis["pretrain_tokens"]]
        step("plot_axis", log, summary=input[0], out=output[0], task=params.task,
             hue="pretrain_tokens", bases=bases,
             title="Rebound by pretraining volume (bands: sd over seeds)")
