"""The shipped default release: its headline files (what the README shows) are what the release
regenerates, and the release has every field the figures need."""
from pathlib import Path

import pandas as pd
import pytest
import yaml

from edgemoe import figures
from edgemoe.counterfactuals import family
from edgemoe.records import merge, read_jsonl
from edgemoe.tables import throughput_table

ROOT = Path(__file__).resolve().parents[1]
CONFIG = yaml.safe_load((ROOT / "config/config.yaml").read_text())
RELEASE = ROOT / "data/released" / CONFIG["release"]
# the DAG's model order: experiment.models, then each counterfactual family (edgemoe.config)
MODELS = CONFIG["experiment"]["models"] + [m for base in CONFIG["experiment"].get("counterfactuals", [])
                                           for m in family(base)]
BASE = CONFIG["experiment"]["baseline"]


@pytest.fixture(scope="module")
def runs():
    path = RELEASE / "runs.jsonl.gz"
    return merge([(str(path), read_jsonl(path))]).to_pandas()


def _same(committed: Path, regenerated: pd.DataFrame):
    assert committed.is_file(), (f"{committed} is missing: make it with snakemake --cores 1 release_headline "
                                 f"--config runs=released release={RELEASE.name}")
    old = pd.read_csv(committed)
    new = pd.read_csv(pd.io.common.StringIO(regenerated.to_csv(index=False, float_format="%.6g")))
    pd.testing.assert_frame_equal(old, new, check_dtype=False)


def test_the_headline_table_is_what_the_release_regenerates(runs):
    _same(RELEASE / "throughput.csv", throughput_table(runs, BASE, MODELS))


def test_the_headline_gap_is_what_the_release_regenerates(runs, tmp_path):
    drawn = figures.gap_figure(runs, MODELS, BASE, str(ROOT / "workflow/figures.mplstyle"), [str(tmp_path / "g.png")])
    _same(RELEASE / "gap.csv", drawn)
    assert (RELEASE / "gap.png").is_file() and (RELEASE / "throughput.md").is_file()


def test_the_release_carries_what_every_figure_needs(runs):
    bench = runs[runs["kind"] == "bench"]
    assert bench["device_read_gbs"].notna().all(), "no roofline without the measured read bandwidth"
    assert bench["round"].notna().all() and bench["warmup"].notna().all(), "the drift figure needs rounds"
    assert bench["host_other_cpu_s"].notna().all(), "noise is recorded, not guessed"


def test_the_roofline_has_a_line_and_an_efficiency_for_every_model(runs, tmp_path):
    """A figure that lost its line because a field went missing from the records fails here."""
    drawn = figures.roofline_figure(runs, MODELS, str(ROOT / "workflow/figures.mplstyle"), [str(tmp_path / "r.png")])
    assert set(drawn["model"]) == set(runs.loc[runs["kind"] == "bench", "model"])
    assert drawn["device_read_gbs"].notna().all() and drawn["roofline_efficiency"].between(0.05, 1.5).all()


def test_the_moe_effect_is_what_the_release_regenerates(runs):
    from edgemoe.tables import moe_effect_table

    table = moe_effect_table(runs, BASE)
    _same(RELEASE / "moe_effect.csv", table)
    tg = table[table["phase"] == "tg"]
    assert set(tg["model"]) == {"olmoe-1b-7b", "olmoe-1b-7b@moe"}
    assert tg["index_lo"].gt(-1).all() and tg["index_hi"].lt(2).all()  # finite: enough counted rounds
