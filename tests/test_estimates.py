"""One estimates layer: every number a figure draws is the table's number, from the same run table;
the interval methods; the paired comparison."""
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from edgemoe import estimates as E
from edgemoe import figures
from edgemoe.paired import Arm, alternate, compare
from edgemoe.records import merge, read_jsonl
from edgemoe.tables import breakdown_table, depth_table, table_note, throughput_table

ROOT = Path(__file__).resolve().parents[1]
STYLE = str(ROOT / "workflow/figures.mplstyle")
MODELS = ["olmoe-1b-7b", "llama-3.2-1b", "qwen2.5-1.5b", "gemma-2-2b"]
BASE = "llama-3.2-1b"
RELEASES = {"rounds": "2026-11-22-linux-cpu-twins-rounds", "block": "2026-11-22-linux-cpu-twins",
            "depth": "2026-11-22-linux-cpu-twins-depth"}


@pytest.fixture(scope="module", params=sorted(RELEASES))
def runs(request):
    path = ROOT / "data/released" / RELEASES[request.param] / "runs.jsonl.gz"
    return merge([(str(path), read_jsonl(path))]).to_pandas()


def _draw(name, runs, tmp_path, **kw):
    return getattr(figures, f"{name}_figure")(runs, MODELS, style=STYLE, out_paths=[str(tmp_path / f"{name}.png")],
                                              **kw)


def test_every_number_a_figure_draws_is_the_tables(runs, tmp_path):
    table = throughput_table(runs, BASE, MODELS).set_index(["device", "model", "quant", "test"])
    gap = _draw("gap", runs, tmp_path, baseline=BASE)
    assert len(gap) == (table.index.get_level_values("model") != BASE).sum()
    for r in gap.itertuples():
        row = table.loc[(r.device, r.model, r.quant, r.test)]
        assert (r.value, r.lo, r.hi) == (row["gen_ratio_to_baseline"], row["ratio_lo"], row["ratio_hi"])
    thr = _draw("throughput", runs, tmp_path)
    col = {"pp": "prefill", "tg": "gen"}
    for r in thr.itertuples():
        row = table.loc[(r.device, r.model, r.quant, r.test)]
        name = col[r.phase]
        assert (r.value, r.lo, r.hi) == (row[f"{name}_tok_s"], row[f"{name}_lo"], row[f"{name}_hi"])
    roof = _draw("roofline", runs, tmp_path)
    for r in roof.itertuples():
        row = table.loc[(r.device, r.model, r.quant, r.test)]
        assert r.value == row["gen_tok_s"]
        # the efficiency the table shows is the one the figure labels (where the records carry the
        # bandwidth: the 2026-11-22 rounds release's round cells did not, test_release checks the default's)
        assert np.isfinite(r.roofline_efficiency) == np.isfinite(r.device_read_gbs)
        assert r.roofline_efficiency == pytest.approx(row["roofline_eff"], nan_ok=True)
        assert r.roofline_efficiency == pytest.approx(r.value * r.weight_bytes_per_token / (r.device_read_gbs * 1e9),
                                                      nan_ok=True)
    assert len(roof) == len(thr[thr["phase"] == "tg"])
    energy = _draw("energy", runs, tmp_path)
    for r in energy.itertuples():
        assert r.value == table.loc[(r.device, r.model, r.quant, r.test), "j_per_token"]
    memory = _draw("memory", runs, tmp_path)
    for r in memory.itertuples():
        assert r.peak_rss_bytes / 1e9 == pytest.approx(table.xs(r.model, level="model")["peak_rss_GB"].max())
    if (runs["kind"] == "profile").any():
        assert _draw("breakdown", runs, tmp_path).equals(breakdown_table(runs))
    if (runs["kind"] == "depth").any():
        assert _draw("depth", runs, tmp_path, baseline=BASE).equals(depth_table(runs, BASE))
    if E.in_rounds(runs[runs["kind"] == "bench"]):
        drift = _draw("drift", runs, tmp_path)
        assert set(drift["model"]) == set(runs.loc[runs["kind"] == "bench", "model"])


def test_figures_without_data_fail_loudly(tmp_path):
    path = ROOT / "data/released" / RELEASES["block"] / "runs.jsonl.gz"
    runs = merge([(str(path), read_jsonl(path))]).to_pandas()
    with pytest.raises(figures.NoData, match="depth"):
        _draw("depth", runs, tmp_path, baseline=BASE)


def test_the_roofline_draws_the_bandwidth_the_records_carry(tmp_path):
    path = ROOT / "data/released" / RELEASES["block"] / "runs.jsonl.gz"
    runs = merge([(str(path), read_jsonl(path))]).to_pandas()
    assert runs.loc[runs["kind"] == "bench", "device_read_gbs"].notna().all()
    roof = _draw("roofline", runs, tmp_path)
    assert roof["device_read_gbs"].notna().all()  # a lost field would lose the line


def test_table_caption_is_written_from_the_methods():
    path = ROOT / "data/released" / RELEASES["rounds"] / "runs.jsonl.gz"
    runs = merge([(str(path), read_jsonl(path))]).to_pandas()
    t = throughput_table(runs, BASE, MODELS)
    note = table_note(t)
    assert "rounds-ratio/order-statistic" in note and "bootstrap" not in note
    with pytest.raises(ValueError, match="no description"):
        E.describe(["made-up"])


def _rounds(values):
    return {k: np.asarray(v, dtype=float) for k, v in enumerate(values)}


def test_paired_ratio_uses_round_medians_and_the_chosen_interval():
    num = _rounds([[10, 11, 30], [12], [9, 9, 9], [10], [10], [11], [10]])
    den = _rounds([[20], [20], [20], [20], [20], [20], [20]])
    e = E.paired_ratio(num, den)
    assert e.value == pytest.approx(0.5) and e.n == 7
    assert (e.lo, e.hi) == (0.45, 0.6)  # 7 rounds: [min, max] of the round ratios
    b = E.paired_ratio(num, den, "two-level-bootstrap")
    assert b.value == e.value and 0.45 <= b.lo <= b.value <= b.hi <= 0.6
    assert math.isnan(E.paired_ratio(num, {}).value)
    with pytest.raises(ValueError):
        E.paired_ratio(num, den, "jackknife")


def test_two_level_bootstrap_handles_rounds_of_different_sizes():
    rng = np.random.default_rng(0)
    rounds = [rng.normal(10, 0.3, n) for n in (1, 2, 3, 3, 2, 1, 3, 3)]
    lo, hi = E.two_level_bootstrap(rounds, seed=1)
    assert lo < np.median([np.median(r) for r in rounds]) < hi
    assert (lo, hi) == E.two_level_bootstrap(rounds, seed=1)  # reproducible


def test_paired_comparison_alternates_abba_and_compares_by_round():
    calls = []

    def arm(name, speed):
        def run(k):
            calls.append((k, name))
            return [speed * (1 + 0.01 * k)] * 2  # a drifting machine: both arms drift alike

        return Arm(name, run)

    rows = alternate([arm("a", 9.0), arm("b", 10.0)], 8)
    assert calls[:4] == [(0, "a"), (0, "b"), (1, "b"), (1, "a")]
    e = compare(rows, "a", "b")
    assert e.value == pytest.approx(0.9) and e.lo == pytest.approx(0.9) and e.n == 8


def test_block_design_estimates_say_so():
    df = pd.DataFrame([{"kind": "bench", "status": "ok", "device": "d", "engine": "e", "quant": "Q", "test": "t",
                        "weights_source": "twin", "model": m, "phase": "tg", "tokens_per_s": v}
                       for m, vs in (("a", [9, 10, 11]), ("b", [20, 20, 20])) for v in vs])
    est = E.estimates(df, "b")
    assert set(est["design"]) == {"block"}
    assert set(est["method"]) == {"block-median", "block-ratio"}
    assert E.pick(est, "ratio", model="a", reference="b").value == pytest.approx(0.5)


def test_figures_draw_unbounded_intervals_of_one_round_and_bootstrap_ones_of_few(tmp_path):
    """Tables and figures ask for the 'auto' interval: order statistics from 6 rounds, the two-level
    bootstrap below that (finite from 2 rounds), nothing finite from one round."""
    path = ROOT / "data/released" / RELEASES["rounds"] / "runs.jsonl.gz"
    all_runs = merge([(str(path), read_jsonl(path))]).to_pandas()
    for last_round, finite in ((0, False), (1, True)):
        runs = all_runs[all_runs["round"].isna() | (all_runs["round"] <= last_round)]
        for name in ("throughput", "gap", "roofline", "energy", "memory", "drift"):
            kw = {"baseline": BASE} if name == "gap" else {}
            drawn = _draw(name, runs, tmp_path, **kw)
            assert len(drawn) or name == "energy"
            if "hi" in drawn.columns and len(drawn) and "method" in drawn.columns:
                rounds_rows = drawn[drawn["method"].astype(str).str.startswith("rounds-")]
                assert np.isfinite(rounds_rows["hi"]).all() == finite, (name, last_round)
                if finite:
                    assert rounds_rows["method"].str.endswith("two-level-bootstrap").all(), name
