"""`python -m elasticity STEP --args JSON`: run one workflow step by hand, as a rule runs it.
`python -m elasticity sweep ...`: a calibration sweep (see `python -m elasticity sweep --help`).

Each job's log starts with the exact command line that reproduces it.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from elasticity.runner import STEPS, run_here


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # The sweep has a command line of its own; every other first word is a step.
    if argv[:1] == ["sweep"]:
        from elasticity.sweep import main as sweep

        return sweep(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m elasticity", description=__doc__)
    parser.add_argument("step", choices=sorted(STEPS))
    parser.add_argument("--args", required=True,
                        help="keyword arguments of the step as JSON, or @FILE holding that JSON")
    parser.add_argument("--threads", type=int, default=1)
    ns = parser.parse_args(argv)
    text = Path(ns.args[1:]).read_text() if ns.args.startswith("@") else ns.args
    try:
        kwargs = json.loads(text)
    except json.JSONDecodeError as err:
        parser.error(f"--args is not valid JSON: {err}")
    run_here(ns.step, kwargs, ns.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
