"""Expert locality (edgemoe.locality, edgemoe.locality_cells): hand-computed sequences, an
independent LRU simulation, the config's resolution and the locality table's files."""

import copy
import json
from collections import OrderedDict

import numpy as np
import pandas as pd
import pytest

from edgemoe import locality as L
from edgemoe.config import ConfigError, Experiment
from edgemoe.locality_cells import plan
from edgemoe.prompts import read_prompts
from edgemoe.locality_data import SCHEMA, merge, read_table, release_rows, write_table


def selections(steps, n_expert, k, prompt="p0", layer=0, model="m", decode="greedy", run="r1"):
    """Rows of one sequence and layer: steps = the selected ids per decode step, in rank order."""
    return pd.DataFrame(
        [
            {
                "device": "d",
                "engine": "e",
                "model": model,
                "quant": "Q4_K_M",
                "decode": decode,
                "prompt_set": "s",
                "run_id": run,
                "prompt_id": prompt,
                "step": i,
                "pos": 10 + i,
                "token": 7,
                "layer": layer,
                "experts": list(ids),
                "n_expert": n_expert,
                "n_expert_used": k,
            }
            for i, ids in enumerate(steps)
        ]
    )


def rate(curve, c, layer=0):
    return curve[(curve["capacity"] == c) & (curve["layer"] == layer)]["hit_rate"].item()


def lru_reference(steps, c):
    """A plain LRU cache of c experts, simulated: all k looked up first, then touched lowest rank
    first (so the top-ranked ends most recent), evicting the least recently used."""
    cache, hits = OrderedDict(), 0
    for ids in steps:
        hits += sum(e in cache for e in ids)
        for e in reversed(ids):
            cache.pop(e, None)
            cache[e] = True
            while len(cache) > c:
                cache.popitem(last=False)
    return hits


HAND = [[0, 1], [1, 2], [0, 3], [1, 2]]  # E = 4, k = 2


def test_hand_computed_sequence():
    sel = selections(HAND, 4, 2)
    acc = L.accesses(sel)
    assert acc["depth"].tolist() == [np.inf, np.inf, 1, np.inf, 2, np.inf, 2, 3]
    curve = L.lru_curve(sel)
    # c=2: only step 1's expert 1 hits; c=3: also step 2's 0 and step 3's 1; c=4: step 3's 2 too
    assert [rate(curve, c) for c in (2, 3, 4)] == [1 / 8, 3 / 8, 4 / 8]
    assert curve["compulsory"].unique().tolist() == [4]
    reuse = L.reuse(sel)
    row = reuse[reuse["layer"] == 0].iloc[0]
    assert (row["reused"], row["compared"], row["uniform_reuse_share"]) == (1, 6, 0.5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_depths_give_the_same_hits_as_a_simulated_lru_for_every_capacity(seed):
    rng = np.random.default_rng(seed)
    n_expert, k = 12, 3
    steps = [list(rng.choice(n_expert, k, replace=False, p=np.r_[[0.3, 0.2], np.full(10, 0.05)])) for _ in range(60)]
    curve = L.lru_curve(selections(steps, n_expert, k))
    for c in range(k, n_expert + 1):
        assert rate(curve, c) == lru_reference(steps, c) / (k * len(steps)), c


def test_a_cache_of_every_expert_misses_only_on_first_use():
    rng = np.random.default_rng(5)
    steps = [list(rng.choice(8, 2, replace=False)) for _ in range(40)]
    curve = L.lru_curve(selections(steps, 8, 2))
    full = curve[(curve["capacity"] == 8) & (curve["layer"] == 0)].iloc[0]
    distinct = len({e for s in steps for e in s})
    assert full["compulsory"] == distinct and full["hits"] == 80 - distinct


def test_identical_consecutive_selections_hit_at_c_equal_k():
    sel = selections([[2, 5]] * 10, 8, 2)
    curve, reuse = L.lru_curve(sel), L.reuse(sel)
    assert rate(curve, 2) == 18 / 20  # only the first step misses
    assert reuse.loc[reuse["layer"] == 0, "reuse_share"].item() == 1.0


def test_at_c_equal_k_every_hit_is_a_reuse_from_the_previous_token():
    rng = np.random.default_rng(9)
    steps = [list(rng.choice(6, 3, replace=False)) for _ in range(50)]
    sel = selections(steps, 6, 3)
    hits = L.lru_curve(sel).query("capacity == 3 and layer == 0")["hits"].item()
    assert hits == L.reuse(sel).query("layer == 0")["reused"].item()


def test_sequences_start_cold_and_reuse_does_not_cross_prompts():
    a = selections([[0, 1], [0, 1]], 4, 2, prompt="a")
    b = selections([[0, 1], [0, 1]], 4, 2, prompt="b")
    sel = pd.concat([a, b], ignore_index=True)
    curve, reuse = L.lru_curve(sel), L.reuse(sel)
    assert rate(curve, 4) == 4 / 8  # each prompt's first step misses: 2 + 2 compulsory
    r = reuse[reuse["layer"] == 0].iloc[0]
    assert (r["reused"], r["compared"]) == (4, 4)  # step 0 of prompt b is not compared with prompt a


def test_uniform_reference_is_c_over_e_when_warm_and_all_misses_when_cold():
    warm = L.uniform_curve(8, 2, [4000]).set_index("capacity")["hit_rate"]
    assert all(abs(warm[c] - c / 8) < 0.02 for c in range(2, 9))
    cold = L.uniform_curve(8, 2, [1, 1, 1])
    assert (cold["hit_rate"] == 0).all()  # one step per sequence: compulsory misses only


def test_token_repeats_say_what_was_fed():
    sel = pd.concat(
        [
            selections([[0, 1]] * 3, 4, 2, decode="repeat").assign(token=5),
            selections([[0, 1]] * 3, 4, 2, decode="text").assign(token=[1, 1, 2]),
        ]
    )
    rep = L.token_repeats(sel).set_index("decode")
    assert rep.loc["repeat", "token_repeat_share"] == 1 and rep.loc["text", "token_repeat_share"] == 0.5
    assert rep.loc["text", "distinct_tokens"] == 2
    assert "text 50%" in L.decoded(sel.assign(n_gen=3, warmup=0, is_twin=True, hf_repo=None))


def test_usage_histogram_lists_every_expert_and_layers_pool_into_all():
    sel = pd.concat([selections([[0, 1], [0, 2]], 4, 2, layer=0), selections([[3, 2], [3, 1]], 4, 2, layer=1)])
    use = L.usage(sel)
    l0 = use[use["layer"] == 0].set_index("expert")
    assert l0["count"].tolist() == [2, 1, 1, 0] and l0["share"].sum() == pytest.approx(1)
    assert L.ALL_LAYERS not in set(use["layer"])  # expert e of one layer is not expert e of another
    curve = L.lru_curve(sel)
    assert rate(curve, 2, L.ALL_LAYERS) == pytest.approx((1 + 1) / 8)  # pooled accesses, not a mean of rates
    s = L.summary(sel).set_index("layer")
    assert s.loc[L.ALL_LAYERS, "steps"] == 2 and s.loc[0, "experts_used"] == 3 and s.loc[0, "sequences"] == 1
    assert np.isnan(s.loc[0, "lru_hit_4k"])  # 4k > E
    assert s.loc[0, "lru_hit_2k"] == 1 - s.loc[0, "compulsory_share"] == 1 / 4  # 2k = E: compulsory misses only


@pytest.mark.parametrize(
    "steps,message", [([[0, 0]], "distinct"), ([[0, 9]], "distinct ids in 0..7"), ([[0, 1, 2]], "expected 2")]
)
def test_check_rejects_bad_selections(steps, message):
    with pytest.raises(ValueError, match=message):
        L.check(selections(steps, 8, 2), 8, 2)


def test_check_rejects_a_step_missing_a_layer():
    sel = pd.concat([selections([[0, 1], [1, 2]], 8, 2, layer=0), selections([[0, 1]], 8, 2, layer=1)])
    with pytest.raises(ValueError, match="layers differ"):
        L.check(sel, 8, 2)


def test_read_experts_parses_the_profilers_rows_and_names_a_bad_line(tmp_path):
    p = tmp_path / "e.jsonl"
    p.write_text(
        '{"step": 0, "pos": 7, "token": 12, "layer": 0, "experts": [3, 5]}\n'
        '{"step": 0, "pos": 7, "token": 12, "layer": 1, "experts": [1, 5]}\n'
    )
    d = L.read_experts(p)
    assert d["experts"].tolist() == [[3, 5], [1, 5]] and d["layer"].tolist() == [0, 1]
    p.write_text(p.read_text() + '{"step": 1}\n')
    with pytest.raises(ValueError, match="e.jsonl:3"):
        L.read_experts(p)


# ---- config: experiment.locality -------------------------------------------------------------------


@pytest.fixture
def cfg(smoke_config):
    c = copy.deepcopy(smoke_config)
    c["experiment"]["locality"] = {
        "enabled": True,
        "models": ["olmoe-tiny", "olmoe-tiny@skew1.5"],
        "prompts": "edge-12",
        "n_gen": 8,
        "decode": ["greedy"],
    }
    return c


def test_plan_resolves_a_skewed_twin_always_a_twin(cfg):
    cfg["weights"] = "twin"
    exp = Experiment(cfg, host_device="linux-cpu")
    p = plan(cfg, exp.models)
    skewed = p.models["olmoe-tiny@skew1.5"]
    assert skewed.weights == "twin" and skewed.router_skew == 1.5 and skewed.derived_from == "olmoe-tiny"
    assert skewed.twin_seed == exp.models["olmoe-tiny"].twin_seed and skewed.spec == exp.models["olmoe-tiny"].spec
    assert skewed.weights_tag != exp.models["olmoe-tiny"].weights_tag
    assert list(p.twins_to_write(exp.models)) == ["olmoe-tiny@skew1.5"]
    assert p.cells("linux-cpu", "eng", ["Q4_K_M"]) == [
        f"results/locality/linux-cpu/eng/olmoe-tiny/{exp.models['olmoe-tiny'].weights_tag}/Q4_K_M/greedy-edge-12.parquet",
        f"results/locality/linux-cpu/eng/olmoe-tiny@skew1.5/{skewed.weights_tag}/Q4_K_M/greedy-edge-12.parquet",
    ]


def test_plan_drops_a_skew_twin_that_is_the_experiments_own_twin(cfg):
    cfg["experiment"]["locality"]["models"] = ["olmoe-tiny", "olmoe-tiny@skew0"]
    exp = Experiment(cfg, host_device="linux-cpu")
    assert list(plan(cfg, exp.models).models) == ["olmoe-tiny"]


@pytest.mark.parametrize(
    "models,decode,message",
    [
        (["llama-tiny"], ["greedy"], "llama-tiny.*dense"),
        (["llama-tiny@skew1"], ["greedy"], "dense"),
        (["nope@skew1"], ["greedy"], "not in the model registry"),
        (["olmoe-tiny@moe"], ["greedy"], "neither a model of the experiment"),
        (["olmoe-tiny"], ["sampled"], "decode.*allowed: text, greedy, repeat, random"),
    ],
)
def test_plan_names_the_key_of_a_bad_entry(cfg, models, decode, message):
    cfg["experiment"]["locality"].update(models=models, decode=decode)
    with pytest.raises(ConfigError, match=f"experiment.locality.*{message}"):
        plan(cfg, Experiment(cfg, host_device="linux-cpu").models)


def test_plan_off_resolves_nothing(cfg):
    cfg["experiment"]["locality"].update(enabled=False, models=["not-in-this-experiment"])
    p = plan(cfg, Experiment(cfg, host_device="linux-cpu").models)
    assert not p.enabled and p.models == {} and p.cells("d", "e", ["Q4_K_M"]) == []


def test_plan_names_a_missing_prompt_set(cfg):
    cfg["experiment"]["locality"]["prompts"] = "no-such-set"
    with pytest.raises(ConfigError, match="experiment.locality.prompts: data/prompts/no-such-set.jsonl not found"):
        plan(cfg, Experiment(cfg, host_device="linux-cpu").models)


def test_the_shipped_prompt_set_reads(tmp_path):
    prompts = read_prompts("data/prompts/edge-12.jsonl")
    assert len(prompts) == 12 and len({p["id"] for p in prompts}) == 12 and all(p["text"] for p in prompts)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n')
    with pytest.raises(ValueError, match="bad.jsonl:2"):
        read_prompts(bad)


# ---- the locality table: files, release, table, figure ----------------------------------------------


def table_rows(model="olmoe-tiny", is_twin=True, skew=0.0, run="r1"):
    rng = np.random.default_rng(3)
    rows = []
    for prompt in ("a", "b"):
        for step in range(6):
            for layer in (0, 1):
                rows.append(
                    {
                        "run_id": run,
                        "device": "d",
                        "backend": "cpu",
                        "engine": "e",
                        "engine_commit": "c",
                        "patches_sha256": "p",
                        "profiler_sha256": "x",
                        "model": model,
                        "derived_from": None,
                        "weights_source": "twin" if is_twin else "hf",
                        "is_twin": is_twin,
                        "router_skew": skew if is_twin else None,
                        "twin_seed": 11 if is_twin else None,
                        "hf_repo": None if is_twin else "org/tiny",
                        "hf_revision": None if is_twin else "abc",
                        "quant": "Q4_K_M",
                        "gguf_sha256": "f" * 64,
                        "gguf_bytes": 10,
                        "arch": "olmoe",
                        "n_layer": 2,
                        "n_expert": 8,
                        "n_expert_used": 2,
                        "decode": "greedy",
                        "prompt_set": "edge-12",
                        "prompt_id": prompt,
                        "prompt_kind": "k",
                        "prompt_sha256": "s",
                        "n_prompt_tokens": 5,
                        "n_gen": 6,
                        "warmup": 0,
                        "n_threads": 2,
                        "run_start_utc": "t",
                        "step": step,
                        "pos": 5 + step,
                        "token": 100 + step,
                        "layer": layer,
                        "experts": [int(e) for e in rng.choice(8, 2, replace=False)],
                    }
                )
    return rows


def test_locality_rows_round_trip_through_parquet_and_a_release_and_merge_once(tmp_path):
    import pyarrow as pa

    t = pa.Table.from_pylist(table_rows() + table_rows("hf-olmoe", is_twin=False, run="r2"), schema=SCHEMA)
    write_table(t, tmp_path / "cell.parquet")
    out = release_rows(tmp_path / "cell.parquet", tmp_path)
    assert out.name == "locality.jsonl.gz" and release_rows(tmp_path / "none.parquet", tmp_path) is None
    back = read_table(out)
    assert back.schema == SCHEMA and back.to_pylist() == read_table(tmp_path / "cell.parquet").to_pylist()
    both = merge([str(tmp_path / "cell.parquet"), str(out)])
    assert both.num_rows == t.num_rows  # a release of these very rows merges with them once


def test_the_table_says_what_was_decoded_and_that_twins_are_random_weights(tmp_path):
    sel = pd.DataFrame(
        table_rows()
        + table_rows("olmoe-tiny@skew1", skew=1.0, run="r2")
        + table_rows("hf-olmoe", is_twin=False, run="r3")
    )
    t = L.table(sel)
    assert list(dict.fromkeys(t["model"])) == ["olmoe-tiny", "olmoe-tiny@skew1", "hf-olmoe"]
    assert t.loc[t["model"] == "olmoe-tiny@skew1", "label"].iloc[0] == "olmoe-tiny@skew1 (twin, skew 1)"
    L.write_table(t, sel, tmp_path / "t.csv", tmp_path / "t.md")
    md = (tmp_path / "t.md").read_text()
    assert "decoded greedy" in md and "never a trained model's" in md and "hf-olmoe: hf weights (org/tiny@abc)" in md
    assert pd.read_csv(tmp_path / "t.csv")["lru_hit_1k"].between(0, 1).all()


def test_the_figure_draws_every_model_and_the_uniform_reference(tmp_path):
    from edgemoe.figures_locality import locality_figure

    sel = pd.DataFrame(
        table_rows()
        + table_rows("olmoe-tiny@skew1", skew=1.0, run="r2")
        + table_rows("hf-olmoe", is_twin=False, run="r3")
    )
    drawn = locality_figure(sel, ["hf-olmoe"], "workflow/figures.mplstyle", [str(tmp_path / "f.png")])
    assert (tmp_path / "f.png").stat().st_size > 0 and set(drawn["panel"]) == {
        "lru_hit_rate",
        "uniform_lru_hit_rate",
        "reuse_share",
    }
    assert (drawn[drawn["panel"] == "uniform_lru_hit_rate"]["n_expert"] == 8).all()
    pooled = drawn[drawn["panel"] == "lru_hit_rate"]
    assert len(pooled) == 3 * 7 and (pooled["layer_min"] <= pooled["hit_rate"] + 1e-12).all()  # c = 2..8, 3 models
    json.dumps(drawn.to_dict("records"), default=str)
