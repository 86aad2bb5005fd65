"""The same config and seeds give the same numbers on CPU, run after run (slow: two runs)."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from .conftest import snakemake

pytestmark = [pytest.mark.slow, pytest.mark.workflow]


def test_two_runs_of_the_smoke_config_agree_exactly(tmp_path, sdist):
    summaries = []
    for name in ("first", "second"):
        workdir = tmp_path / name
        (workdir / "downloads").mkdir(parents=True)
        shutil.copy(sdist, workdir / "downloads" / sdist.name)
        snakemake(workdir, "all")
        summaries.append(pd.read_parquet(workdir / "results" / "smoke" / "responses.parquet"))
    pd.testing.assert_frame_equal(summaries[0], summaries[1])
