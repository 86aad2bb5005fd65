# Experiment `theory` (§4, App. A): Theorem 4.2 evaluated numerically, with no model: the
# integrals of eq. 5 by Monte Carlo and a direct simulation of the token-tree protocol, the
# ratio (dγ_a/dl) / (−k dγ_p/dl) against k and l, under Pareto and lognormal leaf masses
# (elasticity.theory). With the rebound experiment, one table puts theory, simulation and the
# micro-world's measured ratio (theory_check.parquet) side by side (elasticity.theory_table).

localrules:
    theory_table,


THEORY_DIR = f"{OUT}/theory"
EXPERIMENT_CLAIMS["theory"] = f"{THEORY_DIR}/claims.parquet"
THEORY_OUTPUTS = {
    "ratios": f"{THEORY_DIR}/ratios.parquet",
    "regime": f"{THEORY_DIR}/regime.parquet",
    "claims": EXPERIMENT_CLAIMS["theory"],
    "ratio_figure": f"{THEORY_DIR}/ratio_vs_k.png",
    "rates_figure": f"{THEORY_DIR}/rates_vs_l.png",
}
THEORY_TABLE = {"table": f"{THEORY_DIR}/comparison.parquet",
                "html": f"{THEORY_DIR}/comparison.html"}
EXPERIMENT_TARGETS["theory"] = [*THEORY_OUTPUTS.values(), *(
    THEORY_TABLE.values() if "rebound" in config["experiments"] else [])]


rule theory:
    output:
        ratios=THEORY_OUTPUTS["ratios"],
        regime=THEORY_OUTPUTS["regime"],
        claims=THEORY_OUTPUTS["claims"],
        ratio_figure=report(THEORY_OUTPUTS["ratio_figure"], caption="../report/theory.rst",
                            category="Theory"),
        rates_figure=report(THEORY_OUTPUTS["rates_figure"], caption="../report/theory.rst",
                            category="Theory"),
    params:
        block=config["theory"],
        code=CODE["theory"],
    log:
        f"{LOGS}/theory.log",
    run:
        step("theory", log, block=params.block, out_dir=THEORY_DIR)


rule theory_table:
    input:
        measured=THEORY,
    output:
        table=THEORY_TABLE["table"],
        html=report(THEORY_TABLE["html"], caption="../report/theory.rst", category="Theory"),
    params:
        block=config["theory"],
        code=CODE["theory_table"],
    log:
        f"{LOGS}/theory_table.log",
    run:
        step("theory_table", log, measured=input.measured, out_table=output.table,
             out_html=output.html, block=params.block)
