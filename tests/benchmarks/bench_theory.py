"""Benchmark: the `theory` step (Theorem 4.2 numerically) on the default block, time per part.

    .venv/bin/python tests/benchmarks/bench_theory.py [--config PATH] [--workdir DIR]

Runs `elasticity.theory.run` in this process on the `theory` block of config.yaml (or of
--config, merged over it) and prints the wall seconds of: importing the module, the integrals,
the simulation, the figures (and parquet writing, inside `total`), and the total including
imports, against the target: the whole step <= 60 s on this machine. A missed target prints FAIL
(exit status 1). It also prints the ratio R at the grid corner per mass law and method, and
where the asymptotic regime begins, so a change of defaults can be judged on precision too.
"""

from __future__ import annotations

import time

START = time.perf_counter()

import argparse  # noqa: E402  (imports are part of what is timed)
import logging  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402

from elasticity import theory  # noqa: E402
from elasticity.configfile import load_yaml, merge  # noqa: E402

IMPORTED = time.perf_counter()
ROOT = Path(__file__).resolve().parents[2]
WALL_TARGET = 60.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="a config file merged over config.yaml")
    parser.add_argument("--workdir", help="where to write the outputs (default: a temp dir)")
    args = parser.parse_args(argv)
    config = load_yaml(ROOT / "config.yaml")
    if args.config:
        config = merge(config, load_yaml(args.config))
    block = config["theory"]
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(args.workdir or scratch)
        summary = theory.run(block, out)
        total = time.perf_counter() - START
        ratios = pd.read_parquet(out / "ratios.parquet")
        regime = pd.read_parquet(out / "regime.parquet")
    seconds = summary["seconds"]
    print(f"\nblock: samples={block['samples']}, tree={block['tree']}, "
          f"{len(block['k'])} k x {len(block['l'])} l")
    print(f"{'imports':>12}: {IMPORTED - START:6.1f} s")
    for part in ("integrals", "simulation", "figures"):
        print(f"{part:>12}: {seconds[part]:6.1f} s")
    print(f"{'total':>12}: {total:6.1f} s  (target <= {WALL_TARGET:.0f} s: "
          f"{'PASS' if total <= WALL_TARGET else 'FAIL'})")
    corner = ratios[(ratios["k"] == ratios["k"].max())
                    & (ratios["l"] == ratios.loc[ratios["l"] > 0, "l"].min())]
    print("\nR at the grid corner (95% interval):")
    for _, row in corner.sort_values(["distribution", "parameter", "method"]).iterrows():
        print(f"  {row['distribution']:>9} {row['parameter']:4g} {row['method']:>10}: "
              f"{row['ratio']:.6f} [{row['ratio_lower']:.6f}, {row['ratio_upper']:.6f}]")
    starts = regime.groupby(["method", "l"])["k_start"].agg(lambda s: sorted(set(s.fillna(-1))))
    print("\nregime start k per method and l (-1: never), over all mass laws:")
    print(starts.to_string())
    print(f"\nclaims: {summary['claims']}")
    return 0 if total <= WALL_TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
