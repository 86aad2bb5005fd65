"""Step `theory_table`: Theorem 4.2's ratio by theory, by simulation and as measured, side by
side at the micro-world's own k and l.

Measured (the analysis's `theory_check.parquet`): along each inverse chain of the rebound grid,
the change of bits per token from N = 0 to N on held-out pretraining text (Δγ_p) and on
held-out alignment text (Δγ_a), and the normalized ratio Δγ_a / (−k Δγ_p) with its seed-bootstrap
interval, where k = pretraining tokens / (P × tokens per alignment example) and l = N / P.

Theory, at the same (k, l), for every mass law the `theory` block lists (elasticity.theory): the
ratio of the integrals of eq. 5 (Monte Carlo, with an interval) and of the token-tree
simulation. Both are derivatives at l while the measurement is a chord from 0 to l; the theory's
ratio changes little over l ≤ 1 at the micro-world's k, which the table lets one check.

A measured ratio near 1 would be the theorem's inverse proportionality; a negative one means the
pretraining text's compression got worse with the alignment text's (both springs stretched),
which the theorem's joint-training picture does not have.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import pandas as pd

from elasticity import theory
from elasticity.io import atomic_path, read_parquet, write_parquet
from elasticity.provenance import code_version

log = logging.getLogger(__name__)

MEASURED = ["model", "pretrain_tokens", "algorithm", "positive", "negative", "k", "l",
            "delta_pretrain", "delta_alignment", "normalized_ratio", "normalized_ratio_lower",
            "normalized_ratio_upper"]
TABLE_COLUMNS = [*MEASURED, "distribution", "parameter", "c", "integral_ratio",
                 "integral_lower", "integral_upper", "simulation_ratio", "simulation_lower",
                 "simulation_upper", "code_version"]


def predicted(block: dict[str, Any], k: list[float], l: list[float]) -> pd.DataFrame:  # noqa: E741
    """The theory's ratio at every (k, l) pair of the two lists, for each listed mass law."""
    seed, samples, tree = block["seed"], block["samples"], block["tree"]
    frames = []
    for distribution, parameter, c in theory.mass_laws(block):
        both = [theory.integrals(distribution, parameter, c, k, l, samples, seed),
                theory.simulate(distribution, parameter, c, k, l, tree["depth"], tree["trees"],
                                seed)]
        merged = [f.set_index(["k", "l"])[["ratio", "ratio_lower", "ratio_upper"]]
                  .add_prefix(f"{f['method'].iloc[0]}_") for f in both]
        frames.append(merged[0].join(merged[1]).reset_index().assign(
            distribution=distribution, parameter=parameter, c=math.nan if c is None else c))
    out = pd.concat(frames, ignore_index=True)
    return out.rename(columns=lambda name: name.replace("_ratio_", "_"))


def theory_table(measured: str, out_table: str, out_html: str, *,
                 block: dict[str, Any]) -> dict[str, int]:
    """The comparison table (parquet, and a page with one column per mass law)."""
    problems = theory.theory_problems(block)
    if problems:
        raise ValueError("invalid theory block:\n  - " + "\n  - ".join(problems))
    chains = read_parquet(measured, MEASURED)
    pairs = chains[["k", "l"]].drop_duplicates()
    theories = predicted(block, sorted(set(pairs["k"])), sorted(set(pairs["l"])))
    table = chains.merge(theories, on=["k", "l"], how="left").assign(
        code_version=code_version())[TABLE_COLUMNS]
    write_parquet(table, out_table, {"theory": block})
    with atomic_path(out_html) as tmp:
        tmp.write_text(page(table))
    agree = table.drop_duplicates(MEASURED)
    log.info("%d chain points; measured normalized ratio from %.3g to %.3g", len(agree),
             agree["normalized_ratio"].min(), agree["normalized_ratio"].max())
    return {"rows": len(table)}


def _interval(value: float, low: float, high: float) -> str:
    return f"{value:.3g} [{low:.3g}, {high:.3g}]"


def page(table: pd.DataFrame) -> str:
    """One row per chain point: the measurement, then the integral ratio under each law."""
    table = table.assign(
        law=table.apply(lambda r: theory.law_label(r["distribution"], r["parameter"], r["c"]),
                        axis=1),
        theory=table.apply(lambda r: _interval(r["integral_ratio"], r["integral_lower"],
                                               r["integral_upper"]), axis=1))
    key = ["model", "pretrain_tokens", "positive", "negative", "k", "l"]
    wide = table.pivot_table(index=key, columns="law", values="theory", aggfunc="first")
    measured = table.drop_duplicates(key).set_index(key).apply(
        lambda r: _interval(r["normalized_ratio"], r["normalized_ratio_lower"],
                            r["normalized_ratio_upper"]), axis=1).rename("measured")
    shown = pd.concat([measured, wide], axis=1).reset_index()
    return ("<html><head><meta charset='utf-8'><style>body{font-family:sans-serif}"
            "td,th{padding:2px 8px;border-bottom:1px solid #ddd}</style></head><body>"
            "<h2>Theorem 4.2: Δγ_a / (−k Δγ_p), measured along the micro-world's inverse chains "
            "(from N = 0 to N, seed-bootstrap interval) and by the theorem's integrals at the same "
            "k and l (Monte Carlo interval); 1 is the theorem's inverse proportionality</h2>"
            + shown.to_html(index=False, float_format="{:.4g}".format, na_rep="")
            + "<p>The token-tree simulation's ratios are in comparison.parquet "
              "(simulation_*).</p></body></html>")
