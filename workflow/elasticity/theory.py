"""Step `theory`: Theorem 4.2 (Theorem A.8 of the ACL version) evaluated numerically.

Setting (Appendix A). X1, X2, X3 are iid leaf-mass variables: Pareto(alpha, c) with density
alpha c^alpha / x^(alpha+1) on x >= c and mean mu = alpha c / (alpha - 1) (Assumption A.7), or,
as a sensitivity check, lognormal X = exp(sigma Z - sigma^2 / 2) with mean mu = 1. The
pretraining set D_p = D1 u D2 u D3 holds k/3 of volume each, the alignment set D_a ~ D2 volume 1,
the perturbation set D_t ~ D3 volume l. The ideal compressor of D = D_p u D_a u D_t has the
mixture leaf mass (Remark A.4) X_D = N / Z with

    N = (k/3)(x1 + x2 + x3) + x2 + l x3,    Z = k + 1 + l,

and by Lemma A.5 the normalized compression rates (Definition 4.1) are
gamma_p = -E[(s/3) log X_D] (s = x1 + x2 + x3) and gamma_a = -E[x2 log X_D], so
dgamma_p/dl = -dS1/dl and dgamma_a/dl = -dS2/dl (eq. 5). Theorem 4.2 claims dgamma_p/dl < 0 <
dgamma_a/dl and dgamma_a/dl = Theta(-k dgamma_p/dl) for k >> 1, l << 1; the proof's eq. (6)-(12)
amount to R(k, l) = (dgamma_a/dl) / (-k dgamma_p/dl) -> 1.

Formulas. d log X_D / dl = x3/N - 1/Z. With A = E[x2 x3 / N], B = E[x3 (x2 + l x3) / N]:

    dgamma_a/dl = mu/Z - A,      -k dgamma_p/dl = mu (1 + l)/Z - B,

(using (k/3) s = N - x2 - l x3). Writing B = A + l E[x3^2 / N] gives the mixture identity

    -k dgamma_p/dl = dgamma_a/dl + l dgamma_t/dl,    dgamma_t/dl = mu/Z - E[x3^2 / N],

(the weighted cross-entropy derivatives of all components sum to zero because the mixture is the
compressor), so R = 1 / (1 + l dgamma_t / dgamma_a): R = 1 exactly at l = 0 for every k, and for
k -> infinity dgamma_t -> -2 dgamma_a for every mass law, so R -> 1 / (1 - 2 l): the limit is
governed by l -> 0, not by k -> infinity, and dgamma_p/dl changes sign at l = 1/2.
These forms avoid the catastrophic cancellation of naive Monte Carlo on S1, S2 (terms of order
1/k - 1/(k+1)) and use exact means: every integrand left has finite variance for alpha > 1. For
E[x3^2 / N] (whose integrand has infinite variance for alpha <= 2) we integrate
x3^2 / N - x3 / K' = -x3 Q / (N K') instead, with K' = k/3 + l and Q = (k/3)(x1 + x2) + x2,
bounded by min(x3, Q/K') / K'.

Part (a), `integrals`: Monte Carlo with common random numbers — one set of antithetic triples per
(distribution, parameter) serves the whole (k, l) grid, so curves are smooth — and batch means
(BATCHES batches) for standard errors and a delta-method interval of R.

Part (b), `simulate`: the protocol itself. Binary token trees of depth d (M = 2^d leaves); per
tree, D1, D2, D3 each get M iid leaf masses normalized to a leaf distribution p_j (so the
dependence of Remark A.6 is real); D_p's leaves follow (p1 + p2 + p3)/3, D_a's p2, D_t's p3, and
the compressor is q = ((k/3)(p1 + p2 + p3) + p2 + l p3) / Z. A leaf's code length is the sum of
-log q(child)/q(parent) over its d tokens (`code_lengths`), and gamma_j = sum p_j codelength -
log M (nats). Derivatives are central finite differences in l computed as sums of p_j times exact
leaf-level differences of log q (the code length telescopes to -log q(leaf)), which keeps their
precision at large k where dgamma_p/dl is O(1/k^2).

Outputs of `run`: ratios.parquet (both parts, one row per method, distribution, parameter, c, k,
l), regime.parquet (`regime`), claims.parquet (`claims`, experiment "theory"), ratio_vs_k.png and
rates_vs_l.png.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import stdtrit

from elasticity.analysis import CLAIMS_COLUMNS, verdict
from elasticity.io import atomic_path, write_parquet

log = logging.getLogger(__name__)

DISTRIBUTIONS = ("pareto", "lognormal")
# Batch means need enough batches for a t interval that is not much wider than a normal one
# (t_19 = 2.09 vs 1.96) and enough samples per batch for the means to be near normal.
BATCHES = 20
LEVEL = 0.95
# Streams of the seed: one per part, so the two parts never share draws.
INTEGRAL_STREAM, SIMULATION_STREAM = 0, 1
# Relative step of the central differences; small enough that the truncation error (relative
# h^2 terms) is far below the tree-to-tree spread, large enough to keep all digits we need.
RELATIVE_STEP = 1e-3
ZERO_L_STEP = 1e-6
# Validation bounds.
MIN_LARGEST_K = 100
MAX_SMALLEST_L = 0.01
MIN_K_VALUES = 3
DEPTHS = (4, 22)
# Panels of the ratio figure after the smallest l.
MORE_PANELS = 2
MIN_TREES = 2
MIN_SAMPLES = 1000

INTEGRAL_COLUMNS = ["method", "distribution", "parameter", "c", "k", "l", "dgamma_p",
                    "dgamma_p_se", "dgamma_a", "dgamma_a_se", "ratio", "ratio_lower",
                    "ratio_upper", "replicates"]
SIMULATION_COLUMNS = ["method", "distribution", "parameter", "c", "k", "l", "gamma_p", "gamma_a",
                      "dgamma_p", "dgamma_p_se", "dgamma_a", "dgamma_a_se", "ratio",
                      "ratio_lower", "ratio_upper", "replicates"]
REGIME_COLUMNS = ["method", "distribution", "parameter", "c", "l", "k_start", "signs_hold",
                  "signs_from", "ratio_largest_k"]
GROUP = ["method", "distribution", "parameter", "c"]


def mean_mass(distribution: str, parameter: float, c: float | None) -> float:
    """E[X] of the mass law: alpha c / (alpha - 1) for Pareto, 1 for the lognormal."""
    if distribution == "pareto":
        return parameter * c / (parameter - 1)
    if distribution == "lognormal":
        return 1.0
    raise ValueError(f"unknown distribution {distribution!r}; expected one of {DISTRIBUTIONS}")


def _triples(distribution: str, parameter: float, c: float | None, samples: int,
             rng: np.random.Generator) -> np.ndarray:
    """Antithetic triples, shape (BATCHES, per batch, 3), each pair inside one batch.

    Antithetic pairs (U, 1 - U), (Z, -Z) cancel the first-order fluctuation of the integrands,
    which dominates when the masses are nearly equal (small sigma: the standard error of R drops
    from about 0.1 to 0.002 at sigma = 0.01); they are unbiased, and no worse elsewhere."""
    half = max(samples // (2 * BATCHES), 1)
    if distribution == "pareto":
        u = np.clip(rng.random((BATCHES, half, 3)), 2.0**-53, 1 - 2.0**-53)
        return c * np.concatenate([u, 1 - u], axis=1) ** (-1 / parameter)
    z = rng.standard_normal((BATCHES, half, 3))
    return np.exp(parameter * np.concatenate([z, -z], axis=1) - parameter**2 / 2)


def _masses(distribution: str, parameter: float, shape: tuple[int, ...],
            rng: np.random.Generator) -> np.ndarray:
    """Iid leaf masses up to scale (the tree normalizes them, so c does not matter)."""
    if distribution == "pareto":
        return (1 - rng.random(shape)) ** (-1 / parameter)
    return np.exp(parameter * rng.standard_normal(shape))


def _interval(num: np.ndarray, den: np.ndarray) -> tuple[float, float, float, float, float]:
    """Ratio of means of replicate values (batches or trees) and its t interval.

    Delta method on the ratio of means rather than the spread of per-replicate ratios: the
    per-replicate ratio carries a bias of order 1/(replicate size), and the delta method uses
    the strong covariance of numerator and denominator (same draws), which is what makes R
    much more precise than either derivative. Returns R, lower, upper and the standard errors of
    the numerator and denominator means."""
    n = len(num)
    cov = np.cov(np.vstack([num, den])) / n
    ratio = num.mean() / den.mean()
    var = (cov[0, 0] - 2 * ratio * cov[0, 1] + ratio**2 * cov[1, 1]) / den.mean() ** 2
    half = stdtrit(n - 1, (1 + LEVEL) / 2) * math.sqrt(max(var, 0.0))
    return (float(ratio), float(ratio - half), float(ratio + half), float(math.sqrt(cov[0, 0])),
            float(math.sqrt(cov[1, 1])))


def integrals(distribution: str, parameter: float, c: float | None, k: Sequence[float],
              l: Sequence[float], samples: int, seed: int) -> pd.DataFrame:  # noqa: E741
    """Part (a): dgamma_p/dl, dgamma_a/dl and R on the (k, l) grid by Monte Carlo (module doc).

    One draw of `samples` antithetic triples (seeded by `seed`) serves every grid point. Columns
    INTEGRAL_COLUMNS; `replicates` is the number of batches behind the standard errors."""
    rng = np.random.default_rng([seed, INTEGRAL_STREAM])
    x = _triples(distribution, parameter, c, samples, rng)
    mu = mean_mass(distribution, parameter, c)
    x1, x2, x3 = x[..., 0], x[..., 1], x[..., 2]
    rows = []
    for kk in k:
        q_part = kk / 3 * (x1 + x2) + x2
        for ll in l:
            z, k_prime = kk + 1 + ll, kk / 3 + ll
            n = q_part + k_prime * x3
            dgamma_a = mu / z - (x2 * x3 / n).mean(axis=1)
            dgamma_t = mu / z - mu / k_prime + (x3 * q_part / n).mean(axis=1) / k_prime
            minus_k_dgamma_p = dgamma_a + ll * dgamma_t
            ratio, lower, upper, se_a, se_p = _interval(dgamma_a, minus_k_dgamma_p)
            rows.append({"k": float(kk), "l": float(ll),
                         "dgamma_p": float(-minus_k_dgamma_p.mean() / kk), "dgamma_p_se": se_p / kk,
                         "dgamma_a": float(dgamma_a.mean()), "dgamma_a_se": se_a, "ratio": ratio,
                         "ratio_lower": lower, "ratio_upper": upper})
    return _frame(rows, "integral", distribution, parameter, c, BATCHES, INTEGRAL_COLUMNS)


def _frame(rows: list[dict], method: str, distribution: str, parameter: float, c: float | None,
           replicates: int, columns: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame(rows).assign(
        method=method, distribution=distribution, parameter=float(parameter),
        c=float("nan") if c is None or distribution == "lognormal" else float(c),
        replicates=replicates)
    return frame[columns]


def code_lengths(q: np.ndarray) -> np.ndarray:
    """Code length (nats) of every leaf of the binary token tree with leaf probabilities `q`.

    `q` has shape (..., 2^d); node probabilities are sums of their children, and a leaf costs
    the sum over its d tokens of -log q(child)/q(parent), accumulated top-down level by level.
    It telescopes to -log q(leaf) + log q(root) (tested), i.e. the protocol is the compressor."""
    leaves = q.shape[-1]
    depth = leaves.bit_length() - 1
    if leaves != 2**depth:
        raise ValueError(f"{leaves} leaves is not a power of 2")
    levels = [q]
    for _ in range(depth):
        levels.append(levels[-1].reshape(*q.shape[:-1], -1, 2).sum(axis=-1))
    levels.reverse()
    length = np.zeros((*q.shape[:-1], 1))
    for parent, child in zip(levels, levels[1:], strict=False):
        length = np.repeat(length, 2, axis=-1) - np.log(child / np.repeat(parent, 2, axis=-1))
    return length


def simulate(distribution: str, parameter: float, c: float | None, k: Sequence[float],
             l: Sequence[float], depth: int, trees: int, seed: int) -> pd.DataFrame:  # noqa: E741
    """Part (b): gamma_p, gamma_a, their l-derivatives and R measured on simulated token trees.

    `trees` independent trees of depth `depth` (seeded by `seed`); every (k, l) uses the same
    trees. Intervals are over trees. Columns SIMULATION_COLUMNS."""
    rng = np.random.default_rng([seed, SIMULATION_STREAM])
    masses = _masses(distribution, parameter, (3, trees, 2**depth), rng)
    p1, p2, p3 = masses / masses.sum(axis=-1, keepdims=True)
    pretrain = (p1 + p2 + p3) / 3
    log_m = depth * math.log(2)
    rows = []
    for kk in k:
        base = kk * pretrain + p2
        for ll in l:
            lengths = code_lengths((base + ll * p3) / (kk + 1 + ll))
            h = RELATIVE_STEP * ll if ll > 0 else ZERO_L_STEP
            # log q(l + h) - log q(l - h), exactly and without subtracting two code lengths.
            step = (np.log1p(2 * h * p3 / (base + (ll - h) * p3))
                    - math.log1p(2 * h / (kk + 1 + ll - h)))
            dgamma_p = -(pretrain * step).sum(axis=-1) / (2 * h)
            dgamma_a = -(p2 * step).sum(axis=-1) / (2 * h)
            ratio, lower, upper, se_a, se_p = _interval(dgamma_a, -kk * dgamma_p)
            rows.append({"k": float(kk), "l": float(ll),
                         "gamma_p": float((pretrain * lengths).sum(axis=-1).mean() - log_m),
                         "gamma_a": float((p2 * lengths).sum(axis=-1).mean() - log_m),
                         "dgamma_p": float(dgamma_p.mean()), "dgamma_p_se": se_p / kk,
                         "dgamma_a": float(dgamma_a.mean()), "dgamma_a_se": se_a,
                         "ratio": ratio, "ratio_lower": lower, "ratio_upper": upper})
    return _frame(rows, "simulation", distribution, parameter, c, trees, SIMULATION_COLUMNS)


def ratio_at(distribution: str, parameter: float, c: float | None, k: float, l: float,  # noqa: E741
             samples: int, seed: int, depth: int, trees: int) -> dict[str, float]:
    """R at one (k, l), e.g. a trained micro-world's, by both parts, with 95% intervals."""
    out: dict[str, float] = {"k": float(k), "l": float(l)}
    for name, frame in (
            ("integral", integrals(distribution, parameter, c, [k], [l], samples, seed)),
            ("simulation", simulate(distribution, parameter, c, [k], [l], depth, trees, seed))):
        row = frame.iloc[0]
        out |= {f"{name}_ratio": float(row["ratio"]), f"{name}_lower": float(row["ratio_lower"]),
                f"{name}_upper": float(row["ratio_upper"])}
    return out


def regime(frame: pd.DataFrame, tolerance: float) -> pd.DataFrame:
    """Where the asymptotic regime begins, per method, distribution, parameter, c and l.

    k_start: the smallest k of the grid from which |R - 1| <= tolerance holds for it and every
    larger k (NaN if never); signs_hold: dgamma_p < 0 < dgamma_a at every k >= k_start;
    signs_from: the smallest k from which the signs hold for every larger k (NaN if never);
    ratio_largest_k: R at the largest k. Columns REGIME_COLUMNS."""
    rows = []
    for key, group in frame.groupby([*GROUP, "l"], dropna=False, sort=True):
        group = group.sort_values("k")
        close = (group["ratio"] - 1).abs().to_numpy() <= tolerance
        signs = ((group["dgamma_p"] < 0) & (group["dgamma_a"] > 0)).to_numpy()
        k_start, signs_from = _start(group["k"].to_numpy(), close), _start(
            group["k"].to_numpy(), signs)
        held = not math.isnan(k_start) and bool(signs[group["k"].to_numpy() >= k_start].all())
        rows.append(dict(zip([*GROUP, "l"], key, strict=True))
                    | {"k_start": k_start, "signs_hold": held, "signs_from": signs_from,
                       "ratio_largest_k": float(group["ratio"].iloc[-1])})
    return pd.DataFrame(rows, columns=REGIME_COLUMNS)


def _start(k: np.ndarray, holds: np.ndarray) -> float:
    """The smallest k from which `holds` is true for it and every larger k; NaN if never."""
    failing = np.flatnonzero(~holds)
    first = failing[-1] + 1 if len(failing) else 0
    return float(k[first]) if first < len(k) else float("nan")


def claims(integrals_df: pd.DataFrame, simulation_df: pd.DataFrame,
           tolerance: float) -> pd.DataFrame:
    """The theorem's three claims per method, distribution, parameter (and c) at the grid corner.

    The corner is the largest k and the smallest l > 0, the closest the grid gets to k >> 1,
    l << 1. Intervals of the derivatives are t intervals over the replicates (batches, trees);
    the inverse-proportionality statistic tolerance - |R - 1| is positive when the interval of
    R lies within the band 1 +- tolerance. Columns CLAIMS_COLUMNS."""
    rows = []
    for frame in (integrals_df, simulation_df):
        for _, group in frame.groupby(GROUP, dropna=False, sort=True):
            corner = group[(group["k"] == group["k"].max())
                           & (group["l"] == group.loc[group["l"] > 0, "l"].min())].iloc[0]
            rows.extend(_claim_rows(corner, tolerance))
    return pd.DataFrame(rows, columns=CLAIMS_COLUMNS)


def _claim_rows(row: pd.Series, tolerance: float) -> list[dict[str, Any]]:
    name = {"pareto": "α", "lognormal": "σ"}[row["distribution"]]
    scale = "" if math.isnan(row["c"]) else f", c={row['c']:g}"
    scope = (f"{row['distribution']} {name}={row['parameter']:g}{scale} ({row['method']}; "
             f"k={row['k']:g}, l={row['l']:g})")
    replicates = int(row["replicates"])
    t = float(stdtrit(replicates - 1, (1 + LEVEL) / 2))
    lo, hi = row["ratio_lower"], row["ratio_upper"]
    worst = max(abs(lo - 1), abs(hi - 1))
    best = 0.0 if lo <= 1 <= hi else min(abs(lo - 1), abs(hi - 1))
    results = [
        ("theorem 4.2: dγ_p/dl < 0", "dgamma_p/dl", "< 0", row["dgamma_p"],
         row["dgamma_p"] - t * row["dgamma_p_se"], row["dgamma_p"] + t * row["dgamma_p_se"]),
        ("theorem 4.2: dγ_a/dl > 0", "dgamma_a/dl", "> 0", row["dgamma_a"],
         row["dgamma_a"] - t * row["dgamma_a_se"], row["dgamma_a"] + t * row["dgamma_a_se"]),
        ("theorem 4.2: inverse proportionality, dγ_a/dl ≈ −k dγ_p/dl",
         f"{tolerance:g} - |R - 1|, R = (dgamma_a/dl) / (-k dgamma_p/dl)", "> 0",
         tolerance - abs(row["ratio"] - 1), tolerance - worst, tolerance - best),
    ]
    return [{"claim": claim, "metric": "compression rate", "scope": scope, "statistic": statistic,
             "prediction": prediction, "estimate": float(estimate), "lower": float(lower),
             "upper": float(upper), "verdict": verdict(lower, upper, prediction), "reason": "",
             "seeds": replicates, "resamples": 0}
            for claim, statistic, prediction, estimate, lower, upper in results]


def theory_problems(block: dict) -> list[str]:
    """What is wrong with the `theory` config block, one message per problem naming its key."""
    problems: list[str] = []

    def get(key: str) -> Any:
        node: Any = block
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                problems.append(f"theory.{key} is missing")
                return None
            node = node[part]
        return node

    def numbers(key: str) -> list[float]:
        value = get(key)
        if value is None:
            return []
        items = value if isinstance(value, list) else [value]
        if not items or not all(_is_number(v) and math.isfinite(v) for v in items):
            problems.append(f"theory.{key} has {value!r}: expected a non-empty list of finite "
                            "numbers")
            return []
        return [float(v) for v in items]

    ks = numbers("k")
    if any(v <= 0 for v in ks):
        problems.append(f"theory.k has {[v for v in ks if v <= 0]}: the volume ratio k = "
                        "|D_p|/|D_a| must be > 0")
    elif ks and max(ks) < MIN_LARGEST_K:
        problems.append(f"theory.k has largest value {max(ks):g}: the theorem is for k >> 1, so "
                        f"the grid must reach k >= {MIN_LARGEST_K}")
    if ks and len(set(ks)) < MIN_K_VALUES:
        problems.append(f"theory.k has {len(set(ks))} distinct value(s): a ratio-vs-k curve "
                        f"needs at least {MIN_K_VALUES}")
    ls = numbers("l")
    positive = [v for v in ls if v > 0]
    if any(v < 0 for v in ls):
        problems.append(f"theory.l has {[v for v in ls if v < 0]}: the volume ratio l = "
                        "|D_t|/|D_a| must be >= 0")
    elif ls and not positive:
        problems.append("theory.l has no value > 0: the derivatives are compared at some l > 0")
    elif positive and min(positive) > MAX_SMALLEST_L:
        problems.append(f"theory.l has smallest positive value {min(positive):g}: the theorem is "
                        f"for l << 1, so the grid must reach l <= {MAX_SMALLEST_L}")
    if block.get("pareto") is None and block.get("lognormal") is None:
        problems.append("theory.pareto and theory.lognormal are both missing: nothing to compute")
    if block.get("pareto") is not None:
        for alpha in numbers("pareto.alpha"):
            if alpha <= 1:
                problems.append(f"theory.pareto.alpha has {alpha:g}: Pareto masses need alpha > 1 "
                                "(alpha <= 1 has no finite mean)")
        for c in numbers("pareto.c"):
            if c <= 0:
                problems.append(f"theory.pareto.c has {c:g}: the Pareto scale c must be > 0")
    if block.get("lognormal") is not None:
        for sigma in numbers("lognormal.sigma"):
            if sigma <= 0:
                problems.append(f"theory.lognormal.sigma has {sigma:g}: the lognormal sigma must "
                                "be > 0")
    for key, low, high, why in (
            ("samples", MIN_SAMPLES, None, "Monte Carlo intervals need enough samples"),
            ("tree.depth", DEPTHS[0], DEPTHS[1], "shallower trees have too few leaves for Lemma "
             "A.5, deeper ones take too much memory"),
            ("tree.trees", MIN_TREES, None, "an interval over trees needs at least 2"),
            ("seed", 0, None, "a numpy seed is a non-negative integer")):
        value = get(key)
        if value is not None and not (isinstance(value, int) and not isinstance(value, bool)
                                      and low <= value and (high is None or value <= high)):
            bounds = f"an integer >= {low}" if high is None else f"an integer in [{low}, {high}]"
            problems.append(f"theory.{key} has {value!r}: expected {bounds} ({why})")
    tolerance = get("tolerance")
    if tolerance is not None and not (_is_number(tolerance) and 0 < tolerance < 1):
        problems.append(f"theory.tolerance has {tolerance!r}: expected a number in (0, 1) (the "
                        "band 1 +- tolerance for R)")
    return problems


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def mass_laws(block: dict) -> list[tuple[str, float, float | None]]:
    """(distribution, parameter, c) for every configured mass law."""
    laws: list[tuple[str, float, float | None]] = []
    if block.get("pareto"):
        laws += [("pareto", float(a), float(c)) for a in block["pareto"]["alpha"]
                 for c in block["pareto"]["c"]]
    if block.get("lognormal"):
        laws += [("lognormal", float(s), None) for s in block["lognormal"]["sigma"]]
    return laws


def law_label(distribution: str, parameter: float, c: float) -> str:
    if distribution == "pareto":
        return f"Pareto α={parameter:g}" + ("" if math.isnan(c) else f", c={c:g}")
    return f"lognormal σ={parameter:g}"


def plot_ratio(frame: pd.DataFrame, regime_df: pd.DataFrame, tolerance: float,
               path: str | Path) -> None:
    """R against k (log x) per mass law: integrals as lines with their interval as a band,
    the simulation as markers with error bars, the band 1 +- tolerance and R = 1.

    The first panel is the smallest l > 0 (the theorem's l << 1); up to MORE_PANELS more panels
    for the next l < 1/2 show that R tends to 1/(1 - 2l) (dotted), not to 1, when l is not small
    (from l = 1/2 on, -k dgamma_p/dl changes sign at large k and R is no longer informative).
    Legend labels give the regime start at the smallest l (`regime`, integrals)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    positive = sorted(v for v in frame["l"].unique() if v > 0)
    ls = positive[:1] + [v for v in positive[1:] if v < 0.5][:MORE_PANELS]
    fig, axes = plt.subplots(1, len(ls), figsize=(4.2 * len(ls) + 2.5, 4), squeeze=False)
    laws = frame[["distribution", "parameter", "c"]].drop_duplicates().sort_values(
        ["distribution", "parameter", "c"])
    colors = plt.cm.tab10.colors
    for ax, ll in zip(axes[0], ls, strict=True):
        ax.axhspan(1 - tolerance, 1 + tolerance, color="0.9", label=f"Θ-band 1 ± {tolerance:g}")
        ax.axhline(1, color="0.3", lw=0.8)
        if ll < 0.5:
            ax.axhline(1 / (1 - 2 * ll), color="0.3", lw=0.8, ls=":", label="1/(1 − 2l)")
        values = []
        for i, (_, law) in enumerate(laws.iterrows()):
            same = ((frame["distribution"] == law["distribution"])
                    & (frame["parameter"] == law["parameter"])
                    & ((frame["c"] == law["c"]) | (frame["c"].isna() & pd.isna(law["c"])))
                    & (frame["l"] == ll))
            color = colors[i % 10]
            start = regime_df[(regime_df["method"] == "integral")
                              & (regime_df["distribution"] == law["distribution"])
                              & (regime_df["parameter"] == law["parameter"])
                              & (regime_df["l"] == ls[0])]["k_start"]
            where = "never" if start.empty or start.isna().all() else f"k ≥ {start.iloc[0]:g}"
            part = frame[same & (frame["method"] == "integral")].sort_values("k")
            ax.plot(part["k"], part["ratio"], color=color,
                    label=f"{law_label(law['distribution'], law['parameter'], law['c'])} ({where})")
            ax.fill_between(part["k"], part["ratio_lower"], part["ratio_upper"], color=color,
                            alpha=0.25, lw=0)
            sim = frame[same & (frame["method"] == "simulation")].sort_values("k")
            ax.errorbar(sim["k"], sim["ratio"],
                        yerr=[sim["ratio"] - sim["ratio_lower"], sim["ratio_upper"] - sim["ratio"]],
                        fmt="o", ms=3, color=color, capsize=2, lw=0.8)
            values += [*part["ratio"], *sim["ratio"]]
        finite = np.clip(np.asarray(values, dtype=float), -3, 5)
        finite = finite[np.isfinite(finite)]
        if finite.size:
            pad = 0.1 * (np.ptp(finite) + tolerance)
            ax.set_ylim(min(finite.min(), 1 - 1.5 * tolerance) - pad,
                        max(finite.max(), 1 + 1.5 * tolerance) + pad)
        ax.set_xscale("log")
        ax.set_xlabel("k = |D_p| / |D_a|")
        ax.set_title(f"l = {ll:g}" + (" (smallest l)" if ll == ls[0] else ""))
    axes[0][0].set_ylabel("R = (dγ_a/dl) / (−k dγ_p/dl)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8,
               title=f"lines: integrals (a), dots: trees (b)\n(regime start at l = {ls[0]:g})",
               title_fontsize=8)
    fig.suptitle("Theorem 4.2: inverse proportionality ratio against k")
    _save(fig, path)


def plot_rates(sim_frame: pd.DataFrame, path: str | Path) -> None:
    """gamma_p and gamma_a of the simulated trees against l (log x, l > 0) for the smallest,
    a middle and the largest k, one color per Pareto alpha (lognormal if no Pareto).

    Shown as changes from the smallest l, scaled by k^2 (gamma_p) and k (gamma_a): the levels
    differ by far more than the changes (which are O(l/k^2) and O(l/k)), and the scaling puts
    every k on one axis, so the theorem's signs and the factor k between the slopes are visible."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = sim_frame[(sim_frame["l"] > 0)]
    law = "pareto" if (shown["distribution"] == "pareto").any() else "lognormal"
    shown = shown[shown["distribution"] == law]
    if law == "pareto":
        shown = shown[shown["c"] == shown["c"].min()]
    ks = sorted(shown["k"].unique())
    chosen = sorted({ks[0], ks[len(ks) // 2], ks[-1]})
    styles = dict(zip(chosen, ["-", "--", ":"], strict=False))
    params = sorted(shown["parameter"].unique())
    colors = plt.cm.viridis(np.linspace(0, 0.85, len(params)))
    symbol = "α" if law == "pareto" else "σ"
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, column, power, name in zip(
            axes, ["gamma_p", "gamma_a"], [2, 1],
            ["k² [γ_p(l) − γ_p(l_min)]  (pretraining D_p)",
             "k [γ_a(l) − γ_a(l_min)]  (alignment D_a)"], strict=True):
        for color, parameter in zip(colors, params, strict=True):
            for kk in chosen:
                part = shown[(shown["parameter"] == parameter) & (shown["k"] == kk)]
                part = part.sort_values("l")
                change = (part[column] - part[column].iloc[0]) * kk**power
                ax.plot(part["l"], change, styles[kk], color=color, marker=".",
                        label=f"{symbol}={parameter:g}, k={kk:g}")
        ax.axhline(0, color="0.5", lw=0.6)
        ax.set_xscale("log")
        ax.set_xlabel("l = |D_t| / |D_a|")
        ax.set_title(name, fontsize=10)
        ax.set_ylabel("scaled change of the normalized rate (nats)")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7)
    fig.suptitle(f"Normalized compression rates on simulated token trees ({law}); "
                 f"l_min = {shown['l'].min():g}")
    _save(fig, path)


def _save(fig, path: str | Path) -> None:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def run(block: dict, out_dir: str | Path) -> dict[str, Any]:
    """The step: validate, compute both parts for every mass law, write the outputs (module
    doc) and return a summary (rows, verdict counts, seconds per part)."""
    problems = theory_problems(block)
    if problems:
        raise ValueError("invalid theory config:\n- " + "\n- ".join(problems))
    out = Path(out_dir)
    seconds: dict[str, float] = {}
    ks, ls = [float(v) for v in block["k"]], [float(v) for v in block["l"]]
    start = time.perf_counter()
    parts = [integrals(d, p, c, ks, ls, block["samples"], block["seed"])
             for d, p, c in mass_laws(block)]
    seconds["integrals"] = time.perf_counter() - start
    log.info("theory: integrals for %d mass laws in %.1f s", len(parts), seconds["integrals"])
    start = time.perf_counter()
    sims = [simulate(d, p, c, ks, ls, block["tree"]["depth"], block["tree"]["trees"],
                     block["seed"]) for d, p, c in mass_laws(block)]
    seconds["simulation"] = time.perf_counter() - start
    log.info("theory: simulation for %d mass laws in %.1f s", len(sims), seconds["simulation"])
    integral_df = pd.concat(parts, ignore_index=True)
    simulation_df = pd.concat(sims, ignore_index=True)
    ratios = pd.concat([integral_df, simulation_df], ignore_index=True)
    regime_df = regime(ratios, block["tolerance"])
    claims_df = claims(integral_df, simulation_df, block["tolerance"])
    claims_df.insert(0, "experiment", "theory")
    params = {"theory": block}
    write_parquet(ratios, out / "ratios.parquet", params)
    write_parquet(regime_df, out / "regime.parquet", params)
    write_parquet(claims_df, out / "claims.parquet", params)
    start = time.perf_counter()
    plot_ratio(ratios, regime_df, block["tolerance"], out / "ratio_vs_k.png")
    plot_rates(simulation_df, out / "rates_vs_l.png")
    seconds["figures"] = time.perf_counter() - start
    log.info("theory: figures in %.1f s", seconds["figures"])
    counts = claims_df["verdict"].value_counts().to_dict()
    log.info("theory: claims %s", counts)
    return {"rows": len(ratios), "claims": counts, "seconds": seconds}
