"""Rounds: order and chain (edgemoe.rounds), paired ratios over rounds (edgemoe.estimates),
adaptive stopping (edgemoe.stopping), and a simulated drifting machine (edgemoe.simulation) on
which the block design is biased and the rounds' paired ratio is not."""
import itertools
import math

import numpy as np
import pandas as pd
import pytest

from edgemoe.config import ConfigError
from edgemoe.estimates import halfwidth, medians, paired_values, pick, ratios
from edgemoe.rounds import After, Cell, RoundsDesign, headline_pairs, round_order
from edgemoe.simulation import simulate
from edgemoe.stats import ratio_ci
from edgemoe.stopping import decide

CELLS = [Cell("olmoe", "Q4_K_M", "t"), Cell("llama", "Q4_K_M", "t"), Cell("qwen", "Q4_K_M", "t"),
         Cell("gemma", "Q4_K_M", "t")]
SETTINGS = {"enabled": True, "repetitions": 1, "order": "balanced", "seed": 5, "min_rounds": 3, "max_rounds": 20,
            "target_halfwidth": 0.02, "target_phase": "tg", "target_pairs": "all", "budget_s": None,
            "warmup_rounds": 0, "interval": "order-statistic"}


def design(cells=CELLS, every=None, **settings):
    return RoundsDesign({**SETTINGS, **settings}, cells, every or {})


def paired_ratios(df, num, den, phase="tg"):
    """The rounds ratio of num to den as the table gives it (one quant and test)."""
    return pick(ratios(df, [(num, den)], kind=None, phase=phase), "ratio", model=num, reference=den)


def per_model(df, phase=None):
    m = medians(df, kind=None)
    return m if phase is None else m[m["phase"] == phase]


# ---- order and chain -------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["balanced", "shuffled"])
def test_round_order_is_a_deterministic_permutation(mode):
    for k in range(6):
        o = round_order(CELLS, 7, k, mode)
        assert sorted(o) == sorted(CELLS)
        assert o == round_order(list(reversed(CELLS)), 7, k, mode)  # config listing order does not matter
    orders = {tuple(round_order(CELLS, 7, k, mode)) for k in range(12)}
    assert len(orders) > 3  # really shuffled per round
    assert [round_order(CELLS, 7, k, mode) for k in range(6)] != [round_order(CELLS, 8, k, mode) for k in range(6)]


def test_balanced_rounds_come_in_reversed_pairs():
    for j in range(5):
        assert round_order(CELLS, 3, 2 * j + 1) == round_order(CELLS, 3, 2 * j)[::-1]


def test_bad_order_arguments():
    with pytest.raises(ValueError):
        round_order(CELLS, 1, 0, "sorted")
    with pytest.raises(ValueError):
        round_order(CELLS + CELLS[:1], 1, 0)
    with pytest.raises(ValueError):
        design().predecessor(0, Cell("nope", "Q", "t"))
    with pytest.raises(ConfigError, match="min_rounds"):
        design(min_rounds=5, max_rounds=4)
    with pytest.raises(ConfigError, match="every: 1"):
        design(every={"t": 2})


def test_chain_runs_every_cell_once_after_the_previous_round():
    seen = []
    d = design()
    for k in range(4):
        c = d.chain(k)
        assert [cell for cell, _ in c] == round_order(CELLS, 5, k)
        assert c[0][1] == (After(k - 1, None) if k else None)  # first cell waits for the last decision
        for (prev, _), (_, after) in itertools.pairwise(c):
            assert after == After(k, prev)
        seen += [(k, cell) for cell, _ in c]
    assert len(seen) == len(set(seen)) == 4 * len(CELLS)


def test_warmup_rounds_and_sparse_tests():
    cells = CELLS + [Cell(c.model, c.quant, "pp") for c in CELLS]
    d = design(cells, every={"t": 1, "pp": 3}, warmup_rounds=1)
    assert d.is_warmup(0) and not d.is_warmup(1)
    assert {c.test for c in d.cells_of(0)} == {"t"}  # warm-up: the every-round cells only
    assert [len(d.cells_of(k)) for k in range(1, 8)] == [8, 4, 4, 8, 4, 4, 8]  # pp in counted rounds 0, 3, 6
    for k in (1, 3):  # balanced: counted rounds 2j and 2j+1 run the common cells in reverse
        assert [c for c in d.order(k + 1) if c.test == "t"] == [c for c in d.order(k) if c.test == "t"][::-1]
    assert sorted(d.order(1)) == sorted(d.cells_of(1))
    assert d.id != design(cells, every={"t": 1, "pp": 2}, warmup_rounds=1).id  # membership is the design
    assert d.id == design(cells, every={"t": 1, "pp": 3}, warmup_rounds=1, budget_s=99).id  # stopping is not
    assert d.stopping != design(cells, every={"t": 1, "pp": 3}, warmup_rounds=1, budget_s=99).stopping


def test_headline_pairs_put_the_same_active_baseline_first():
    fam = {"olmoe": "moe", "qwen": "dense", "llama": "dense", "gemma": "dense"}
    assert headline_pairs(fam, "llama") == [("olmoe", "llama"), ("olmoe", "qwen"), ("olmoe", "gemma")]
    assert headline_pairs(fam, "llama", "baseline") == [("olmoe", "llama")]


# ---- paired statistics -----------------------------------------------------------------------
def _rows(values):
    """{(round, model): [tok/s per repetition]} -> run-table-like rows."""
    return pd.DataFrame([{"device": "d", "engine": "e", "quant": "Q", "test": "t", "phase": "tg", "status": "ok",
                          "round": k, "model": m, "tokens_per_s": v}
                         for (k, m), vs in values.items() for v in vs])


def test_paired_ratio_is_the_median_of_within_round_ratios():
    df = _rows({(0, "a"): [10, 11, 12], (0, "b"): [20], (1, "a"): [30], (1, "b"): [40],
                (2, "a"): [5], (2, "b"): [10], (3, "a"): [9]})  # round 3 has no b: not a pair
    assert list(paired_values(df, "a", "b")) == [11 / 20, 30 / 40, 5 / 10]
    e = paired_ratios(df, "a", "b")
    assert e.value == pytest.approx(11 / 20) and e.n == 3
    assert e.lo == -math.inf and e.hi == math.inf  # three rounds bound no 95% interval


def test_failed_cells_and_other_phases_are_not_paired():
    df = _rows({(0, "a"): [10], (0, "b"): [20], (1, "a"): [10], (1, "b"): [40]})
    df.loc[(df["round"] == 1) & (df["model"] == "b"), "status"] = "crash"
    pp = _rows({(0, "a"): [1000], (0, "b"): [1]}).assign(phase="pp")
    e = paired_ratios(pd.concat([df, pp]), "a", "b")
    assert e.value == 0.5 and e.n == 1
    assert math.isnan(paired_ratios(df, "a", "missing").value)


def test_ratios_are_per_test_never_pooled():
    df = pd.concat([_rows({(0, "a"): [1], (0, "b"): [2]}), _rows({(0, "a"): [3], (0, "b"): [2]}).assign(test="u")])
    r = ratios(df, [("a", "b")], kind=None)
    assert sorted(zip(r["test"], r["value"])) == [("t", 0.5), ("u", 1.5)]


def test_warmup_rows_never_enter_an_estimate():
    df = _rows({(k, m): [v] for k in range(7) for m, v in (("a", 10 + k), ("b", 20))})
    df["warmup"] = df["round"] == 0
    df.loc[df["warmup"], "tokens_per_s"] = 1.0  # a cold first round
    assert list(paired_values(df, "a", "b")) == [(10 + k) / 20 for k in range(1, 7)]
    assert paired_ratios(df, "a", "b").n == 6
    assert per_model(df, "tg").set_index("model").loc["b", "n"] == 6


def test_per_model_is_the_median_over_round_medians():
    df = _rows({(0, "a"): [1, 2, 100], (1, "a"): [3, 4, 5], (2, "a"): [7, 8, 9]})
    p = per_model(df, "tg")
    assert len(p) == 1 and p.iloc[0]["value"] == 4 and p.iloc[0]["n"] == 3
    df = _rows({(k, "a"): [v] for k, v in enumerate([5, 1, 4, 2, 6, 3])})
    p = per_model(df, "tg")
    assert p.iloc[0]["value"] == 3.5 and p.iloc[0]["lo"] == 1 and p.iloc[0]["hi"] == 6  # 6 rounds: [min, max]


# ---- the drifting machine ----------------------------------------------------------------------
SPEEDS = {"moe": 60.0, "dense": 100.0}  # true ratio 0.6
TRUE = SPEEDS["moe"] / SPEEDS["dense"]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("drift", [0.01, 0.002])
def test_drift_biases_the_block_design_but_not_paired_rounds(seed, drift):
    kw = {"n_rounds": 10, "repetitions": 3, "drift_per_step": drift, "noise_sd": 0.005, "seed": seed}
    block = simulate(SPEEDS, design="block", **kw)
    rb = ratio_ci(block.loc[block["model"] == "moe", "tokens_per_s"], block.loc[block["model"] == "dense", "tokens_per_s"])
    assert not (rb.lo <= TRUE <= rb.hi), f"block design should be biased: {rb}"
    assert rb.lo > TRUE  # the first model ran on the faster (cooler) machine
    rounds = simulate(SPEEDS, design="rounds", **kw)
    rr = paired_ratios(rounds, "moe", "dense")
    assert rr.lo <= TRUE <= rr.hi, f"paired rounds should cover the true ratio: {rr}"
    assert halfwidth(rr) < 0.05  # and not by being uselessly wide
    # the machine really drifted during the rounds: the last round is slower than the first
    r = rounds.groupby("round")["tokens_per_s"].median()
    assert r.iloc[-1] < r.iloc[0]


def test_without_drift_both_designs_cover_the_truth():
    kw = {"n_rounds": 10, "repetitions": 3, "drift_per_step": 0.0, "noise_sd": 0.01, "seed": 4}
    block = simulate(SPEEDS, design="block", **kw)
    rb = ratio_ci(block.loc[block["model"] == "moe", "tokens_per_s"], block.loc[block["model"] == "dense", "tokens_per_s"])
    rr = paired_ratios(simulate(SPEEDS, design="rounds", **kw), "moe", "dense")
    assert rb.lo <= TRUE <= rb.hi and rr.lo <= TRUE <= rr.hi


def test_simulated_timeline_is_one_step_per_repetition():
    d = simulate({"a": 1.0, "b": 1.0}, design="rounds", n_rounds=2, repetitions=3, drift_per_step=0.1)
    assert sorted(d["step"]) == list(range(12))
    first = d[d["step"] == 0].iloc[0]
    assert first["tokens_per_s"] == 1.0 and d[d["step"] == 11].iloc[0]["tokens_per_s"] == pytest.approx(0.9 ** 11)


# ---- stopping ----------------------------------------------------------------------------------
PAIRS = [("moe", "dense")]


def _sim(n_rounds, noise=0.002, drift=0.001, step_s=10.0):
    return simulate(SPEEDS, design="rounds", n_rounds=n_rounds, repetitions=2, drift_per_step=drift,
                    noise_sd=noise, seed=9, step_s=step_s)


def test_target_met_stops_but_not_before_min_rounds():
    d = decide(_sim(2), 0.02, None, pairs=PAIRS, min_rounds=3)
    assert d["continue"] and d["reason"] == "fewer than min_rounds" and d["rounds_done"] == 2
    d = decide(_sim(5), 0.02, None, pairs=PAIRS, min_rounds=3)
    assert d["continue"] and d["reason"] == "target not met"  # a 95% interval needs 6 rounds
    d = decide(_sim(6), 0.02, None, pairs=PAIRS, min_rounds=3)
    assert not d["continue"] and d["reason"] == "target met"
    assert d["worst_halfwidth"] <= 0.02 and d["ratios"][0]["met"] and d["ratios"][0]["num"] == "moe"


def test_noisy_machine_keeps_going_until_budget_or_cap():
    noisy = _sim(4, noise=0.2)
    d = decide(noisy, 0.02, None, pairs=PAIRS)
    assert d["continue"] and d["reason"] == "target not met" and d["worst_halfwidth"] is None  # no interval yet
    # each round: 2 models x 2 repetitions x 10 s = 40 s; 4 rounds used 160 s; a fifth does not fit in 190 s
    d = decide(noisy, 0.02, 190, pairs=PAIRS)
    assert d["used_s"] == pytest.approx(160) and d["last_round_s"] == pytest.approx(40)
    assert not d["continue"] and d["reason"] == "budget spent"
    assert decide(noisy, 0.02, 200, pairs=PAIRS)["continue"]
    d = decide(noisy, 0.02, None, pairs=PAIRS, max_rounds=4)
    assert not d["continue"] and d["reason"] == "max rounds"


def test_budget_counts_measuring_time_not_interruptions():
    d = _sim(4, noise=0.2)
    late = d["round"] >= 2  # rounds 2 and 3 resumed a day later
    for c in ("cell_start_utc", "cell_end_utc"):
        d.loc[late, c] = (pd.to_datetime(d.loc[late, c]) + pd.Timedelta(days=1)).map(lambda t: t.isoformat())
    assert decide(d, 0.02, 200, pairs=PAIRS)["continue"]
    start = d["cell_start_utc"].min()
    assert decide(d, 0.02, 200, start, PAIRS)["reason"] == "budget spent"  # wall-clock mode counts the day


def test_fixed_number_of_rounds():
    assert decide(_sim(4), None, None, pairs=PAIRS, max_rounds=5)["reason"] == "fixed number of rounds"
    d = decide(_sim(5), None, None, pairs=PAIRS, max_rounds=5)
    assert not d["continue"] and d["reason"] == "max rounds"


def test_a_pair_that_never_measured_is_reported_not_targeted():
    d = _sim(4)
    d.loc[d["model"] == "dense", "status"] = "oom"
    out = decide(d, 0.02, None, pairs=PAIRS, max_rounds=6)
    assert out["continue"] and out["reason"] == "target not met" and out["unmeasurable"] == ["moe/dense Q t"]


def test_decision_is_json_serialisable():
    import json

    json.dumps(decide(_sim(3, noise=0.05), 0.02, 1000, pairs=PAIRS + [("moe", "absent")]), allow_nan=False)


def test_drift_figure_writes_png_and_pdf(tmp_path):
    pytest.importorskip("matplotlib")
    pytest.importorskip("seaborn")
    from edgemoe.figures import drift_figure

    d = _sim(4, drift=0.01).assign(kind="bench")
    d = pd.concat([d, d.assign(phase="pp", tokens_per_s=d["tokens_per_s"] * 10)])
    out = [str(tmp_path / "drift.png"), str(tmp_path / "drift.pdf")]
    drawn = drift_figure(d, ["moe", "dense"], None, out)
    assert len(drawn) == 2 * 2 * 4  # models x phases x rounds
    assert all((tmp_path / f).stat().st_size > 1000 for f in ("drift.png", "drift.pdf"))
    assert np.isfinite(per_model(d)["value"]).all()


def test_a_long_prefill_round_does_not_end_the_budget_early():
    # rounds of 40 s, every third one 120 s (a prefill round): after such a round the next is short
    d = _sim(4, noise=0.2)
    last = d["round"] == 3  # the last round ran 80 s longer (its cells' ends)
    d.loc[last, "cell_end_utc"] = (pd.to_datetime(d.loc[last, "cell_end_utc"]) + pd.Timedelta(seconds=80)).map(
        lambda t: t.isoformat())
    assert decide(d, 0.02, 300, pairs=PAIRS)["reason"] == "budget spent"  # 240 used + 120 foreseen
    out = decide(d, 0.02, 300, pairs=PAIRS, like_next=[0, 1, 2])  # the next round is like rounds 0-2
    assert out["continue"] and out["next_round_s"] == pytest.approx(40) and out["last_round_s"] == pytest.approx(120)
    des = design(CELLS + [Cell(c.model, c.quant, "pp") for c in CELLS], every={"t": 1, "pp": 3}, warmup_rounds=1)
    assert des.rounds_like(5, upto=4) == [0, 2, 3]  # warm-up and counted 1, 2 have no pp; counted 3 (round 4) has


def test_time_between_a_rounds_cells_is_not_measuring_time():
    d = _sim(2, noise=0.2)
    assert decide(d, 0.02, None, pairs=PAIRS)["used_s"] == pytest.approx(80)
    # a twin written for 100 s between two cells of round 0 (Snakemake runs it in the gap)
    later = (d["round"] == 0) & (d["model"] == d.loc[d["round"] == 0, "model"].iloc[-1])
    for c in ("cell_start_utc", "cell_end_utc"):
        d.loc[later, c] = (pd.to_datetime(d.loc[later, c]) + pd.Timedelta(seconds=100)).map(lambda t: t.isoformat())
    assert decide(d, 0.02, None, pairs=PAIRS)["used_s"] == pytest.approx(80)


def test_a_pair_is_no_pair_in_a_test_that_does_not_run_one_of_its_models():
    df = pd.concat([_rows({(k, m): [v] for k in range(6) for m, v in (("a", 10), ("b", 20))}),
                    _rows({(k, "a"): [10] for k in range(6)}).assign(test="a-only")])
    df["kind"] = "bench"
    r = ratios(df, [("a", "b")], kind="bench")
    assert list(r["test"]) == ["t"]  # not a row for a-only, which never ran b
    df.loc[df["model"] == "b", "status"] = "crash"  # b ran and failed: that pair is there, unmeasured
    r = ratios(df, [("a", "b")], kind="bench")
    assert list(r["test"]) == ["t"] and r["n"].iloc[0] == 0
