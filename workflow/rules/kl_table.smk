# Experiment `kl_table` (App. B.2, Table 3): along each inverse chain, the negative volume at
# which KL(model || base) drops below kl_table.epsilon, per P, with seed intervals. Its fine N
# grid shares the chains of the other experiments' cells (elasticity.chains).

localrules:
    kl_table,


KL_TABLE = f"{OUT}/tables/kl_table.parquet"
KL_TABLE_HTML = f"{OUT}/tables/kl_table.html"
KL_FIGURE = f"{OUT}/figures/table3_kl.png"
EXPERIMENT_CLAIMS["kl_table"] = f"{OUT}/claims/kl_table.parquet"
EXPERIMENT_TARGETS["kl_table"] = [KL_TABLE, KL_TABLE_HTML, KL_FIGURE,
                                  EXPERIMENT_CLAIMS["kl_table"]]


rule kl_table:
    input:
        SUMMARY,
    output:
        table=KL_TABLE,
        html=report(KL_TABLE_HTML, caption="../report/table3_kl.rst", category="KL table"),
        claims=EXPERIMENT_CLAIMS["kl_table"],
        figure=report(KL_FIGURE, caption="../report/table3_kl.rst", category="KL table"),
    params:
        cells=[c.row() for c in grid.experiment_cells(config, "kl_table")],
        epsilon=config["kl_table"]["epsilon"],
        interval=config["rebound"]["interval"],
        resamples=config["rebound"]["resamples"],
        code=CODE["kl_table"],
    log:
        f"{LOGS}/kl_table.log",
    run:
        step("kl_table", log, summary=input[0], out_table=output.table,
             out_html=output.html, out_claims=output.claims, out_figure=output.figure,
             cells=params.cells,
             epsilon=params.epsilon, interval=params.interval, resamples=params.resamples)
