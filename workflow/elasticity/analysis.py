"""Step `analyze`: the paper's claims tested on the cells, each with an interval and a verdict.

Everything is computed on seed means, and every interval is a percentile bootstrap over seeds
(seeds are resampled jointly for all cells, so bases compared with each other share a draw). A
claim's verdict follows one rule (`verdict`): *supported* when the interval lies entirely on the
side the paper predicts, *contradicted* when it lies entirely on the other side, *not resolved*
otherwise or with fewer than MIN_SEEDS seeds, and *not testable* (with the reason) when the grid
cannot measure it.

The claims, per base checkpoint, per metric (the metric rises with alignment):
- rebound: the initial drop (N = 0 to the smallest N > 0) grows with P (slope against log10 P).
- faster than proportional: the remainder (y_N* - base)/(y_0 - base) at a fixed N* falls with
  P (slope against log10 P), and the decay time of the fit shrinks with P (alpha < 0).
- resistance: the decline is fast first and slow later (early minus late rate of decline, per
  example, positive).
- size / pretraining: the drop fraction 1 - remainder at N*, averaged over P, grows with the
  base's parameters / pretraining tokens (slope against log10), across the axis's bases.

The decay fit, per base: y(P, N) = a_P + g_P * exp(-N / tau_P), tau_P = tau_1 * (P / P_min)^alpha,
free asymptotes a_P and gains g_P. Its elasticity score N_half: the N at which the fitted curve
of the largest P has lost half its gain over the base.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from elasticity.aggregate import read_experiment
from elasticity.grid import BASE
from elasticity.io import atomic_path, read_parquet, write_parquet
from elasticity.provenance import code_version

log = logging.getLogger(__name__)

# Metrics the claims are tested on; each rises with alignment on positive data.
ANALYZED = ("margin", "positive_rate")
# Below this many seeds a bootstrap over seeds has too few distinct resamples (3 seeds: 10) and
# its interval is too narrow to decide: the estimate is reported, the verdict stays open.
MIN_SEEDS = 5
CLAIMS_COLUMNS = ["claim", "metric", "scope", "statistic", "prediction", "estimate", "lower",
                  "upper", "verdict", "reason", "seeds", "resamples"]
ELASTICITY_COLUMNS = ["metric", "model", "pretrain_tokens", "algorithm", "positive", "n_half",
                      "n_half_lower", "n_half_upper", "alpha", "alpha_lower", "alpha_upper"]
THEORY_COLUMNS = ["model", "pretrain_tokens", "algorithm", "positive", "negative",
                  "delta_pretrain", "delta_pretrain_lower", "delta_pretrain_upper",
                  "delta_alignment", "delta_alignment_lower", "delta_alignment_upper", "ratio",
                  "ratio_lower", "ratio_upper", "k", "l", "normalized_ratio",
                  "normalized_ratio_lower", "normalized_ratio_upper"]


@dataclass
class Curves:
    """One base's aligned cells as an array over (seed, P, N), and its base-model values."""

    positive: np.ndarray  # P values, ascending
    negative: np.ndarray  # N values, ascending (0 first when present)
    values: np.ndarray  # shape (seeds, P, N)
    base: np.ndarray  # shape (seeds,)

    def mean(self, draw: np.ndarray) -> tuple[np.ndarray, float]:
        return self.values[draw].mean(axis=0), float(self.base[draw].mean())


def measured_seeds(cells: pd.DataFrame, metric: str) -> list[int]:
    """The seeds whose cells carry the metric (`generation.cells` may sample fewer)."""
    return sorted(cells.loc[cells[metric].notna(), "seed"].unique().tolist())


def curves(cells: pd.DataFrame, metric: str, seeds: list[int]) -> Curves:
    """A base's cells (one base, one algorithm) arranged by seed, P and N; only cells that
    carry the metric."""
    cells = cells[cells[metric].notna()]
    aligned = cells[cells["algorithm"] != BASE]
    base = cells[cells["algorithm"] == BASE].set_index("seed")[metric]
    table = aligned.pivot_table(index=["seed", "positive"], columns="negative", values=metric,
                                aggfunc="first")
    positive = np.sort(aligned["positive"].unique())
    negative = np.sort(aligned["negative"].unique())
    values = np.stack([table.loc[s].reindex(index=positive, columns=negative).to_numpy()
                       for s in seeds])
    return Curves(positive, negative, values, base.reindex(seeds).to_numpy())


def verdict(lower: float, upper: float, prediction: str) -> str:
    """The one rule: the interval entirely on the predicted side of zero, or the other."""
    above, below = lower > 0, upper < 0
    if prediction == "< 0":
        above, below = below, above
    return "supported" if above else "contradicted" if below else "not resolved"


def slope(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.polyfit(x, y, 1)[0])


def fit_decay(positive: np.ndarray, negative: np.ndarray, mean: np.ndarray,
              start: np.ndarray | None = None) -> dict[str, Any]:
    """Least-squares fit of the decay model (module docstring) to seed means, shape (P, N).
    `start`: the parameters to start from (a fit's "theta"); by default from the data."""
    from scipy.optimize import least_squares

    n_p = len(positive)
    scale = float(np.ptp(mean)) or 1.0
    span = float(negative.max())
    rel = positive / positive.min()

    n_n = len(negative)
    rows = np.repeat(np.arange(n_p), n_n)

    def decay(theta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        tau = np.exp(theta[-2]) * rel ** theta[-1]
        return tau, np.exp(-negative[None, :] / tau[:, None])

    def residuals(theta: np.ndarray) -> np.ndarray:
        a, g = theta[:n_p], theta[n_p:2 * n_p]
        _, e = decay(theta)
        return ((a[:, None] + g[:, None] * e - mean) / scale).ravel()

    def jacobian(theta: np.ndarray) -> np.ndarray:
        # Analytic: the bootstrap fits thousands of times, and a finite-difference Jacobian
        # doubles the cost of each.
        g = theta[n_p:2 * n_p]
        tau, e = decay(theta)
        d_log_tau = (g[:, None] * e * negative[None, :] / tau[:, None]).ravel()
        jac = np.zeros((n_p * n_n, 2 * n_p + 2))
        jac[np.arange(n_p * n_n), rows] = 1.0
        jac[np.arange(n_p * n_n), n_p + rows] = e.ravel()
        jac[:, -2] = d_log_tau
        jac[:, -1] = d_log_tau * np.log(rel)[rows]
        return jac / scale

    if start is None:
        start = np.concatenate([mean[:, -1], mean[:, 0] - mean[:, -1],
                                [math.log(span / 3), 0.0]])
    low, high = [math.log(span * 1e-3), -5.0], [math.log(span * 1e3), 5.0]
    fit = least_squares(residuals, start, jac=jacobian,
                        bounds=([-np.inf] * 2 * n_p + low, [np.inf] * 2 * n_p + high))
    theta = fit.x
    # A decay time or exponent on its bound is not estimated (no decay inside the N range):
    # it is undefined, not the bound's value.
    if np.isclose(theta[-2:], low).any() or np.isclose(theta[-2:], high).any():
        return {"a": theta[:n_p], "g": theta[n_p:2 * n_p], "tau": np.full(n_p, math.nan),
                "alpha": math.nan, "theta": theta}
    return {"a": theta[:n_p], "g": theta[n_p:2 * n_p],
            "tau": np.exp(theta[-2]) * rel ** theta[-1], "alpha": float(theta[-1]),
            "theta": theta}


def n_half(fit: dict[str, Any], base: float, index: int) -> float:
    """The N at which the fitted curve of P index `index` keeps half its gain over the base;
    infinite when its asymptote keeps more than half."""
    a, g, tau = fit["a"][index], fit["g"][index], fit["tau"][index]
    gain = a + g - base
    if gain <= 0 or g <= 0 or math.isnan(tau):
        return math.nan
    level = (base + gain / 2 - a) / g
    return -tau * math.log(level) if 0 < level < 1 else math.inf


class Bootstrap:
    """Seed resamples shared by every statistic of one run."""

    def __init__(self, seeds: int, resamples: int, interval: float, rng_seed: int = 0):
        rng = np.random.default_rng(rng_seed)
        self.full = np.arange(seeds)
        self.draws = rng.integers(0, seeds, size=(resamples, seeds))
        self.tail = (100 - interval) / 2

    def interval(self, statistic) -> tuple[float, float, float]:
        """Estimate on all seeds and the percentile interval over the resamples."""
        return self.intervals(lambda d: (statistic(d),))[0]

    def intervals(self, statistics) -> list[tuple[float, float, float]]:
        """`interval` for a function returning several statistics from one computation."""
        estimates = np.asarray(statistics(self.full), dtype=float)
        values = np.array([statistics(d) for d in self.draws], dtype=float)
        out = []
        for k, estimate in enumerate(estimates):
            column = values[:, k]
            column = column[~np.isnan(column)]
            if len(column) == 0:
                out.append((float(estimate), math.nan, math.nan))
                continue
            # N_half is infinite where a curve keeps more than half its gain: interpolating
            # between infinities gives NaN, so such a column takes the nearest resample.
            method = "nearest" if np.isinf(column).any() else "linear"
            low, high = np.percentile(column, [self.tail, 100 - self.tail], method=method)
            out.append((float(estimate), float(low), float(high)))
        return out


def _first_positive(negative: np.ndarray) -> int:
    return int(np.flatnonzero(negative > 0)[0])


def fixed_negative(negative: np.ndarray) -> int:
    """Index of N*, the fixed N of the remainder: the middle one of the N > 0."""
    positive = np.flatnonzero(negative > 0)
    return int(positive[len(positive) // 2])


def remainder(c: Curves, draw: np.ndarray) -> np.ndarray:
    mean, base = c.mean(draw)
    gain = mean[:, 0] - base
    kept = (mean[:, fixed_negative(c.negative)] - base) / np.where(gain > 0, gain, np.nan)
    return kept


def drop_fraction(c: Curves, draw: np.ndarray) -> float:
    """1 - the remainder at N*, mean over P: the share of the gain the second stage took (nan
    where no P has a gain)."""
    kept = remainder(c, draw)
    return math.nan if np.isnan(kept).all() else float(1 - np.nanmean(kept))


def testability(c: Curves, seeds: int, need_p: int = 2, need_n: int = 2) -> str | None:
    if seeds < 2:
        return ("needs at least 2 seeds for an interval (grid.seed; for the sampled metric "
                "also generation.cells)")
    if c.negative[0] != 0:
        return "needs N = 0 in grid.negative (the aligned model the decline starts from)"
    if len(c.positive) < need_p:
        return f"needs at least {need_p} P values (grid.positive)"
    if int((c.negative > 0).sum()) < need_n:
        return f"needs at least {need_n} N values above 0 (grid.negative)"
    return None


def claim_row(claim: str, metric: str, scope: str, statistic: str, prediction: str,
              boot: Bootstrap, stat=None, reason: str | None = None,
              result: tuple[float, float, float] | None = None) -> dict[str, Any]:
    """A claim's row; its statistic is `stat` (a function of a seed draw), or `result` when
    already computed."""
    row = {"claim": claim, "metric": metric, "scope": scope, "statistic": statistic,
           "prediction": prediction, "seeds": 0, "resamples": 0}
    if reason is None:
        estimate, lower, upper = result or boot.interval(stat)
        if math.isnan(lower) or math.isnan(estimate):
            reason = ("the statistic is undefined on all seeds or every resample (no gain over "
                      "the base, or the decay fit ran into a bound of its parameters)")
        else:
            seeds = len(boot.full)
            decided = verdict(lower, upper, prediction)
            note = ""
            if seeds < MIN_SEEDS and decided != "not resolved":
                decided = "not resolved"
                note = (f"{seeds} seeds: a bootstrap over fewer than {MIN_SEEDS} is too narrow "
                        "to decide (the experiment's `seed` list)")
            return {**row, "estimate": estimate, "lower": lower, "upper": upper,
                    "verdict": decided, "reason": note, "seeds": seeds,
                    "resamples": len(boot.draws)}
    return {**row, "estimate": math.nan, "lower": math.nan, "upper": math.nan,
            "verdict": "not testable", "reason": reason}


def base_claims(c: Curves, metric: str, scope: str, boot: Bootstrap,
                fitted: dict[str, Any]) -> list[dict[str, Any]]:
    """The claims about one base; `fitted` is its `elasticity_scores` row (the decay fit)."""
    seeds = len(boot.full)
    logp = np.log10(c.positive.astype(float))
    rows = []

    def drop(draw):
        mean, _ = c.mean(draw)
        return slope(logp, mean[:, 0] - mean[:, _first_positive(c.negative)])

    why = testability(c, seeds, need_n=1)
    rows.append(claim_row("rebound: the initial drop grows with P", metric, scope,
                          "slope of y(N=0) - y(smallest N>0) against log10 P", "> 0", boot,
                          drop, why))

    def kept(draw):
        r = remainder(c, draw)
        return math.nan if np.isnan(r).any() else slope(logp, r)

    why = testability(c, seeds, need_n=1)
    nstar = "" if why else f" at N={c.negative[fixed_negative(c.negative)]}"
    rows.append(claim_row("faster than proportional: larger P keeps less of its gain", metric,
                          scope, f"slope of the remainder{nstar} against log10 P", "< 0", boot,
                          kept, why))

    why = testability(c, seeds, need_n=3)
    rows.append(claim_row("faster than proportional: decay time shrinks with P", metric, scope,
                          "alpha in tau_P ~ P^alpha (decay fit)", "< 0", boot, reason=why,
                          result=tuple(fitted[k] for k in ("alpha", "alpha_lower", "alpha_upper"))))

    why = testability(c, seeds, need_p=1, need_n=2)
    rows.append(claim_row(RESISTANCE_CLAIM, metric, scope, RESISTANCE_STATISTIC, "> 0", boot,
                          lambda draw: resistance_statistic(c, draw), why))
    return rows


RESISTANCE_CLAIM = "resistance: fast decline first, slow later"
RESISTANCE_STATISTIC = "early minus late rate of decline per example, mean over P"


def resistance_statistic(c: Curves, draw: np.ndarray) -> float:
    """The resistance claim's statistic on a seed draw: the rate of decline over the first N
    step minus that over the last, per example, mean over P (positive: fast first, slow
    later)."""
    mean, _ = c.mean(draw)
    n = c.negative.astype(float)
    early = (mean[:, 0] - mean[:, 1]) / (n[1] - n[0])
    late = (mean[:, -2] - mean[:, -1]) / (n[-1] - n[-2])
    return float(np.mean(early - late))


def axis_claim(named: list[tuple[float, Curves]], metric: str, claim: str, axis: str,
               boot: Bootstrap) -> dict[str, Any]:
    """The drop fraction at N*, mean over P, against log10 of the axis's value."""
    statistic = f"slope of the drop fraction at N* against log10 {axis}"
    if len(named) < 2:
        return claim_row(claim, metric, axis, statistic, "> 0", boot,
                         reason=f"needs at least 2 bases on the {axis} axis")
    why = next((w for _, c in named if (w := testability(c, len(boot.full), 1, 1))), None)
    x = np.log10([v for v, _ in named])

    def stat(draw):
        drops = np.array([drop_fraction(c, draw) for _, c in named])
        return math.nan if np.isnan(drops).any() else slope(x, drops)

    return claim_row(claim, metric, axis, statistic, "> 0", boot, stat, why)


def elasticity_scores(c: Curves, metric: str, key: dict[str, Any],
                      boot: Bootstrap) -> dict[str, Any]:
    """N_half of the largest P and alpha, from the decay fit, with intervals."""
    row = {"metric": metric, **key, "positive": int(c.positive[-1])}
    if testability(c, len(boot.full), need_p=2, need_n=3):
        return {**row, **dict.fromkeys(ELASTICITY_COLUMNS[5:], math.nan)}

    # Resamples start from the fit to all seeds: the same optimum, reached in fewer steps.
    start = fit_decay(c.positive, c.negative, c.mean(boot.full)[0])["theta"]

    def fitted(draw):
        mean, base = c.mean(draw)
        fit = fit_decay(c.positive, c.negative, mean, start)
        return n_half(fit, base, len(c.positive) - 1), fit["alpha"]

    (nh, nl, nu), (al, alo, ahi) = boot.intervals(fitted)
    return {**row, "n_half": nh, "n_half_lower": nl, "n_half_upper": nu, "alpha": al,
            "alpha_lower": alo, "alpha_upper": ahi}


def theory_rows(cells: pd.DataFrame, key: dict[str, Any], seeds: list[int], boot: Bootstrap,
                tokens_per_example: float) -> list[dict[str, Any]]:
    """Theorem 4.2 along each inverse chain: the change of bits per token on the pretraining
    text and on the alignment distribution from N = 0 to each N > 0, their ratio, and the
    theorem's normalized ratio Δγ_a / (−k Δγ_p) (1 in its asymptotic regime), next to
    k = |D_pretrain| / |D_align| (in tokens) and l = N / P."""
    pre = curves(cells, "bits_per_token_pretrain", seeds)
    ali = curves(cells, "bits_per_token_positive", seeds)
    if pre.negative[0] != 0 or len(pre.negative) < 2:
        return []
    rows = []
    for i, p in enumerate(pre.positive):
        k = key["pretrain_tokens"] / (int(p) * tokens_per_example)
        for j in range(1, len(pre.negative)):
            def delta(c, draw, i=i, j=j):
                mean, _ = c.mean(draw)
                return float(mean[i, j] - mean[i, 0])

            def ratio(d):
                down = -delta(pre, d)
                return delta(ali, d) / down if down != 0 else math.nan

            dp = boot.interval(lambda d: delta(pre, d))
            da = boot.interval(lambda d: delta(ali, d))
            r = boot.interval(ratio)
            rows.append({**key, "positive": int(p), "negative": int(pre.negative[j]),
                         "delta_pretrain": dp[0], "delta_pretrain_lower": dp[1],
                         "delta_pretrain_upper": dp[2], "delta_alignment": da[0],
                         "delta_alignment_lower": da[1], "delta_alignment_upper": da[2],
                         "ratio": r[0], "ratio_lower": r[1], "ratio_upper": r[2], "k": k,
                         "l": int(pre.negative[j]) / int(p), "normalized_ratio": r[0] / k,
                         "normalized_ratio_lower": r[1] / k,
                         "normalized_ratio_upper": r[2] / k})
    return rows


def tokens_per_example(tokenizer: str, pool: str) -> float:
    """Mean tokens of an alignment example (BOS not counted): |D_align| in tokens is P times it."""
    from elasticity.models import load_tokenizer

    texts = read_parquet(pool, ["text"])["text"].tolist()
    return float(np.mean([len(ids) - 1 for ids in load_tokenizer(tokenizer)(texts)["input_ids"]]))


def _base_cells(cells: pd.DataFrame, model: str, tokens: int, algorithm: str) -> pd.DataFrame:
    """One base's cells: its base-model cells and those of one algorithm."""
    return cells[(cells["model"] == model) & (cells["pretrain_tokens"] == tokens)
                 & cells["algorithm"].isin([algorithm, BASE])]


def analyze(summary: str, bases: str, tokenizer: str, positive_pool: str, out_claims: str,
            out_elasticity: str, out_theory: str, out_table: str, out_landing: str, *,
            run_name: str, grid: dict[str, Any], size_bases: list[list],
            pretraining_bases: list[list], interval: float, resamples: int,
            experiment_cells: list[dict[str, Any]],
            experiment_claims: list[str]) -> dict[str, int]:
    """Claims, elasticity scores and the theory check from the summary (one row per cell);
    `out_landing` is the report's landing page (what was run, the claims, where the figures
    are). `grid` is the config's grid section; size_bases and pretraining_bases the
    (model, pretrain_tokens) of each axis (elasticity.grid; the pretraining axis may be
    empty). experiment_claims: the other experiments' claims files (same columns), appended to
    the claims table."""
    per_example = tokens_per_example(tokenizer, positive_pool)
    cells = read_experiment(summary, experiment_cells)
    params = read_parquet(bases, ["model", "pretrain_tokens", "parameters"])
    seeds = {m: measured_seeds(cells, m) for m in (*ANALYZED, "bits_per_token_pretrain")}
    boots = {m: Bootstrap(len(s), resamples, interval) for m, s in seeds.items()}
    claims, scores, theory = [], [], []
    groups = cells[cells["algorithm"] != BASE].groupby(["model", "pretrain_tokens", "algorithm"])
    for (model, tokens, algorithm), _ in groups:
        one = _base_cells(cells, model, tokens, algorithm)
        key = {"model": model, "pretrain_tokens": int(tokens), "algorithm": algorithm}
        scope = f"{model} @ {tokens:,} tokens ({algorithm})"
        for metric in ANALYZED:
            c = curves(one, metric, seeds[metric])
            scores.append(elasticity_scores(c, metric, key, boots[metric]))
            claims += base_claims(c, metric, scope, boots[metric], scores[-1])
        theory += theory_rows(one, key, seeds["bits_per_token_pretrain"],
                              boots["bits_per_token_pretrain"], per_example)
    for metric in ANALYZED:
        boot = boots[metric]
        for algorithm in sorted(set(cells["algorithm"]) - {BASE}):
            def on(model, tokens, metric=metric, algorithm=algorithm):
                return curves(_base_cells(cells, model, tokens, algorithm), metric,
                              seeds[metric])

            size = [(float(params.loc[(params["model"] == m) & (params["pretrain_tokens"] == t),
                                      "parameters"].iloc[0]), on(m, t)) for m, t in size_bases]
            claims.append(axis_claim(size, metric, "size: larger models lose more",
                                     "parameters", boot))
            if pretraining_bases:
                budget = [(float(t), on(m, t)) for m, t in pretraining_bases]
                claims.append(axis_claim(budget, metric,
                                         "pretraining: more pretrained models lose more",
                                         "pretraining tokens", boot))
    table = pd.concat([pd.DataFrame(claims, columns=CLAIMS_COLUMNS).assign(experiment="rebound"),
                       *(read_parquet(path, ["experiment", *CLAIMS_COLUMNS])
                         for path in experiment_claims)], ignore_index=True)
    write_parquet(table, out_claims, {"interval": interval, "resamples": resamples})
    write_parquet(pd.DataFrame(scores, columns=ELASTICITY_COLUMNS), out_elasticity,
                  {"interval": interval})
    write_parquet(pd.DataFrame(theory, columns=THEORY_COLUMNS), out_theory,
                  {"interval": interval, "tokens_per_example": per_example})
    with atomic_path(out_table) as tmp:
        tmp.write_text(claims_html(table, pd.DataFrame(scores, columns=ELASTICITY_COLUMNS),
                                   pd.DataFrame(theory, columns=THEORY_COLUMNS), interval))
    with atomic_path(out_landing) as tmp:
        tmp.write_text(landing_rst(run_name, grid, size_bases, pretraining_bases, table,
                                   pd.DataFrame(scores, columns=ELASTICITY_COLUMNS),
                                   interval, {m: len(seeds[m]) for m in ANALYZED}))
    counts = table["verdict"].value_counts().to_dict()
    log.info("claims: %s", counts)
    return counts


def claims_html(claims: pd.DataFrame, scores: pd.DataFrame, theory: pd.DataFrame,
                interval: float) -> str:
    """The claims table, the ranked elasticity scores and the theory check, as a report page."""
    shown = claims.assign(**{f"{interval:g}% interval": claims.apply(
        lambda r: "" if math.isnan(r["lower"]) else f"[{r['lower']:.3g}, {r['upper']:.3g}]",
        axis=1)})
    shown = shown[["experiment", "claim", "metric", "scope", "statistic", "prediction", "estimate",
                   f"{interval:g}% interval", "verdict", "reason"]]
    ranked = scores.sort_values(["metric", "n_half"])
    return ("<html><head><meta charset='utf-8'><style>body{font-family:sans-serif}"
            "td,th{padding:2px 8px;border-bottom:1px solid #ddd}</style></head><body>"
            f"<h2>Claims ({interval:g}% bootstrap intervals over seeds)</h2>"
            + shown.to_html(index=False, float_format="{:.4g}".format, na_rep="")
            + "<h2>Elasticity scores: N<sub>½</sub> of the largest P (lower: less resistant "
              "alignment)</h2>"
            + ranked.to_html(index=False, float_format="{:.4g}".format, na_rep="")
            + "<h2>Theorem 4.2 along the inverse chains: change of bits/token from N = 0 to "
              "each N on pretraining text (predicted &lt; 0) and on the alignment "
              "distribution (predicted &gt; 0); their ratio, k, l = N/P, and the ratio over k "
              "(the theorem's normalized ratio, 1 in its asymptotic regime)</h2>"
            + theory.to_html(index=False, float_format="{:.4g}".format, na_rep="")
            + "</body></html>")


def _list_table(header: list[str], rows: list[list[str]]) -> str:
    lines = [".. list-table::", "   :header-rows: 1", ""]
    for row in [header, *rows]:
        lines += [f"   * - {row[0]}"] + [f"     - {cell}" for cell in row[1:]]
    return "\n".join(lines) + "\n"


def _interval(row: pd.Series, low: str, high: str) -> str:
    return "" if pd.isna(row[low]) else f"[{row[low]:.3g}, {row[high]:.3g}]"


def landing_rst(name: str, grid: dict[str, Any], size_bases: list[list],
                pretraining_bases: list[list], claims: pd.DataFrame, scores: pd.DataFrame,
                interval: float, seeds: dict[str, int]) -> str:
    """The report's landing page: what was run, the claims with verdicts, the ranking."""
    title = f"elasticity: run ``{name}``"
    budgets = (f"{pretraining_bases[0][0]} at "
               f"{', '.join(f'{t:,}' for _, t in pretraining_bases)} tokens"
               if pretraining_bases else "none")
    ran = [
        "- size axis: " + ", ".join(f"{m} at {t:,}" for m, t in size_bases)
        + " pretraining tokens",
        f"- pretraining axis: {budgets}",
        f"- algorithms: {', '.join(grid['algorithm'])}; P = "
        f"{', '.join(map(str, grid['positive']))}; N = {', '.join(map(str, grid['negative']))}",
        f"- seeds: {', '.join(f'{n} for {m}' for m, n in seeds.items())}; "
        f"code {code_version()}",
    ]
    # One row per claim and metric: how many scopes got each verdict, and why not decided.
    rows = []
    for (claim, metric), group in claims.groupby(["claim", "metric"], sort=False):
        counts = group["verdict"].value_counts()
        reasons = sorted(set(group["reason"]) - {""})
        rows.append([claim, metric, ", ".join(f"**{n} {v}**" for v, n in counts.items()),
                     "; ".join(reasons)])
    ranked = scores.dropna(subset=["n_half"]).sort_values(["metric", "n_half"])
    ranking = [[r["metric"], f"{r['model']} @ {r['pretrain_tokens']:,}",
                f"{r['n_half']:.3g} {_interval(r, 'n_half_lower', 'n_half_upper')}"]
               for _, r in ranked.iterrows()]
    parts = [title, "=" * len(title), "", "What was run:", "", *ran, "",
             f"Claims: verdicts over the bases and axes ({interval:g}% bootstrap intervals over "
             "seeds; verdict rule in README \"Claims\"; every estimate and interval in "
             "category Claims_ and ``claims.parquet``):", "",
             _list_table(["claim", "metric", "verdicts", "why not decided"], rows), ""]
    if ranking:
        parts += ["Elasticity scores (N½ of the largest P with its interval, from the decay "
                  "fit; lower: the alignment is undone sooner):", "",
                  _list_table(["metric", "base", "N½"], ranking), ""]
    parts += ["Figures: the Fig. 4-6 analogs for the sampled metric and the preference margin "
              "in Rebound_, the compression rates along the chains in Theory_."]
    return "\n".join(parts) + "\n"
