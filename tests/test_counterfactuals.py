"""Counterfactual twins (edgemoe/counterfactuals.py): the three members of an MoE's family differ
in their FFN and router only; sweeps keep the active FFN fixed; the total-tracking index."""
import copy

import numpy as np
import pandas as pd
import pytest
from gguf import GGUFReader

from edgemoe import counterfactuals as cf
from edgemoe import estimates as E
from edgemoe.architectures import ArchSpec
from edgemoe.config import ConfigError, Experiment
from edgemoe.twins import write_twin
from test_twins import SPEC, VOCAB

FFN = ("ffn_gate", "ffn_up", "ffn_down")  # ffn_gate_inp (the router) starts with ffn_gate too


def _members(spec_cfg=SPEC, base="m"):
    spec = ArchSpec.from_config(base, spec_cfg)
    return {d: cf.derive(f"{base}@{d}", spec, ["Q4_K_M"]) for d in cf.FAMILY}


def test_family_members_have_the_ffn_widths_of_the_definition():
    m = _members()
    base = ArchSpec.from_config("m", SPEC)
    assert m["moe"].arch == "llama" and (m["moe"].n_expert, m["moe"].n_expert_used, m["moe"].n_ff) == (8, 2, 256)
    assert not m["dense-active"].is_moe and m["dense-active"].n_ff == 2 * 256
    assert not m["dense-total"].is_moe and m["dense-total"].n_ff == 8 * 256
    # the same FFN bytes per token as the MoE, and every parameter of it read per token
    assert m["dense-active"].active_params() == pytest.approx(m["moe"].active_params(), rel=0.02)
    assert m["dense-total"].total_params() == pytest.approx(base.total_params(), rel=0.02)


def test_three_members_files_differ_in_the_ffn_and_router_only(tmp_path):
    """The written GGUFs: same tensors (names, shapes, types) but the FFN and the router, and the
    same metadata but the FFN width and the expert counts."""
    files = {}
    for d, spec in _members().items():
        files[d] = GGUFReader(write_twin(spec, "m", 7, VOCAB, tmp_path / f"{d}.gguf", progress=False) and
                              tmp_path / f"{d}.gguf")
    tensors = {d: {t.name: (tuple(int(x) for x in t.shape), t.tensor_type.name) for t in r.tensors}
               for d, r in files.items()}
    not_ffn = {d: {k: v for k, v in t.items() if k.split(".")[-2] not in FFN and "_exps" not in k
                   and "ffn_gate_inp" not in k} for d, t in tensors.items()}
    assert not_ffn["moe"] == not_ffn["dense-active"] == not_ffn["dense-total"]
    assert {k for k in tensors["moe"] if k not in not_ffn["moe"]} == {
        f"blk.{i}.{n}.weight" for i in range(2) for n in ("ffn_gate_inp", "ffn_gate_exps", "ffn_up_exps",
                                                          "ffn_down_exps")}
    metadata = {d: {k: f.contents() for k, f in r.fields.items() if not k.startswith("GGUF.")}
                for d, r in files.items()}
    allowed = {"llama.feed_forward_length", "llama.expert_count", "llama.expert_used_count"}
    for d in ("dense-active", "dense-total"):
        differ = {k for k in set(metadata["moe"]) | set(metadata[d]) if metadata["moe"].get(k) != metadata[d].get(k)}
        assert differ == allowed
    assert metadata["dense-total"]["llama.feed_forward_length"] == 8 * 256
    assert metadata["moe"]["tokenizer.ggml.pre"] == "olmo"  # the original's tokenizer, not llama's


def test_sweep_keeps_active_width_and_uses_canonical_ids():
    spec = ArchSpec.from_config("m", SPEC)  # 8 experts, 2 used, width 256: active 512
    ids = cf.sweep("m", spec, [4, 8], [1, 2], ["Q8_0"])
    assert "m@moe" in ids and "m@dense-active" in ids and "m@dense-total" in ids  # E8k2 is the stand-in
    members = {i: cf.derive(i, spec, ["Q8_0"]) for i in ids}
    for i, s in members.items():
        if s.is_moe:
            assert s.n_expert_used * s.n_ff == 512, i
    assert members["m@E4k1"].n_ff == 512 and members["m@dense-ff4096"].n_ff == 4096 and members["m@dense-total"].n_ff == 2048


def _cfg(default_config, **experiment):
    cfg = copy.deepcopy(default_config)
    cfg["experiment"].update(experiment)
    return cfg


@pytest.mark.parametrize("experiment, message", [
    ({"models": ["olmoe-1b-7b", "llama-3.2-1b", "llama-3.2-1b@dense-active"], "counterfactuals": []},
     "experiment.models (llama-3.2-1b@dense-active): 'llama-3.2-1b' is dense"),
    ({"counterfactuals": ["qwen2.5-1.5b"]}, "experiment.counterfactuals: 'qwen2.5-1.5b' is dense"),
    ({"sweep": {"base": "olmoe-1b-7b", "n_expert": [64], "n_expert_used": [3]}},
     "experiment.sweep: olmoe-1b-7b@E64k3: expert width 8192/3 = 2730.67 is not a whole number"),
    ({"sweep": {"base": "olmoe-1b-7b", "n_expert": [64], "n_expert_used": [16]}},
     "expert width 8192/16 = 512"),  # fine: 512 is a multiple of 256
    ({"sweep": {"base": "olmoe-1b-7b", "n_expert": [64], "n_expert_used": [64]}},
     "expert width 8192/64 = 128 is not a multiple of 256"),
    ({"sweep": {"base": "olmoe-1b-7b", "n_expert": [4], "n_expert_used": [8]}},
     "olmoe-1b-7b@E4k8: 4 experts with 8 used"),
    ({"models": ["olmoe-1b-7b", "llama-3.2-1b", "olmoe-1b-7b@dense-half"]}, "unknown derivation 'dense-half'"),
])
def test_bad_derivations_are_named_config_errors(default_config, experiment, message):
    cfg = _cfg(default_config, **experiment)
    if message.startswith("expert width 8192/16"):
        assert "olmoe-1b-7b@E64k16" in Experiment(cfg).models
        return
    with pytest.raises(ConfigError) as e:
        Experiment(cfg)
    assert message in str(e.value)


def _rounds(times: dict[str, float], n_rounds=8, reps=3, noise=0.0, seed=0, ffn=None):
    """Synthetic rounds records: per model a per-token time, tokens/s = 1/t (with optional noise)."""
    rng = np.random.default_rng(seed)
    rows = []
    for k in range(n_rounds):
        for m, t in times.items():
            for r in range(reps):
                rows.append({"kind": "bench", "status": "ok", "warmup": False, "device": "d", "engine": "e",
                             "quant": "Q4_K_M", "test": "tg64", "weights_source": "twin", "model": m, "phase": "tg",
                             "round": k, "repetition": r,
                             "tokens_per_s": 1 / t * (1 + noise * rng.standard_normal()), **ffn[m]})
    return pd.DataFrame(rows)


FFN_OF = {
    "m": {"derived_from": None, "ffn_experts": 8, "ffn_experts_used": 2, "ffn_width": 256},
    "m@moe": {"derived_from": "m", "ffn_experts": 8, "ffn_experts_used": 2, "ffn_width": 256},
    "m@dense-active": {"derived_from": "m", "ffn_experts": 0, "ffn_experts_used": 0, "ffn_width": 512},
    "m@dense-total": {"derived_from": "m", "ffn_experts": 0, "ffn_experts_used": 0, "ffn_width": 2048},
}


def test_tracking_index_is_where_the_moe_time_sits_between_its_brackets():
    t_active, t_total = 1 / 20, 1 / 5
    runs = _rounds({"m": t_active + 0.1 * (t_total - t_active), "m@moe": t_active + 0.25 * (t_total - t_active),
                    "m@dense-active": t_active, "m@dense-total": t_total}, ffn=FFN_OF)
    assert sorted(E.tracking_triples(runs)) == [("m", "m@dense-active", "m@dense-total"),
                                                ("m@moe", "m@dense-active", "m@dense-total")]
    est = E.estimates(runs, baseline="m@dense-active")
    assert E.pick(est, "tracking_index", model="m@moe", phase="tg", device="d", engine="e", quant="Q4_K_M",
                  test="tg64", weights_source="twin").value == pytest.approx(0.25)
    ix = est[est["quantity"] == "tracking_index"]
    assert set(ix["method"]) == {"rounds-index/order-statistic"} and (ix["n"] == 8).all()
    standin = est[(est["quantity"] == "ratio") & (est["reference"] == "m")]
    assert standin["model"].tolist() == ["m@moe"]


def test_tracking_index_interval_covers_the_truth_with_noise():
    truth = 0.3
    t_a, t_t = 1 / 18, 1 / 4
    hits = 0
    for seed in range(40):
        runs = _rounds({"m@moe": t_a + truth * (t_t - t_a), "m@dense-active": t_a, "m@dense-total": t_t},
                       n_rounds=12, noise=0.05, seed=seed, ffn=FFN_OF)
        e = E.tracking_index(runs, E.tracking_triples(runs)).iloc[0]
        hits += e["lo"] <= truth <= e["hi"]
    assert hits >= 36  # 95% intervals: at least 90% of 40


def test_records_without_ffn_facts_have_no_index():
    runs = _rounds({"a": 0.05, "b": 0.06}, ffn={"a": {}, "b": {}})
    assert E.tracking_triples(runs) == []


def test_moe_effect_and_sweep_figures_draw_the_estimates(tmp_path):
    from edgemoe import figures

    t_a = 1 / 20
    times = {"m@moe": t_a * 1.05, "m@dense-active": t_a, "m@dense-total": t_a * 5, "m@E4k1": t_a * 1.2,
             "m@dense-ff4096": t_a * 9, "m@E8k1": t_a * 1.3}
    ffn = {**FFN_OF, "m@E4k1": {"derived_from": "m", "ffn_experts": 4, "ffn_experts_used": 1, "ffn_width": 512},
           "m@E8k1": {"derived_from": "m", "ffn_experts": 8, "ffn_experts_used": 1, "ffn_width": 512},
           "m@dense-ff4096": {"derived_from": "m", "ffn_experts": 0, "ffn_experts_used": 0, "ffn_width": 4096}}
    runs = _rounds(times, n_rounds=8, noise=0.02, ffn=ffn)
    runs = pd.concat([runs, runs.assign(phase="pp", tokens_per_s=runs["tokens_per_s"] * 10)], ignore_index=True)
    runs = runs.assign(params_total=1e9, gguf_bytes=5e8, weight_bytes_per_token=2e8)
    style = str(E.__file__).replace("edgemoe/estimates.py", "workflow/figures.mplstyle")
    effect = figures.moe_effect_figure(runs, list(times), style, [str(tmp_path / "e.png")])
    # E4k1's total width 4 x 512 is m's total (2048): its brackets are the family's
    assert set(effect["model"]) == {"m@moe", "m@E4k1", "m@E8k1"} and set(effect["phase"]) == {"tg", "pp"}
    assert effect.loc[(effect["model"] == "m@moe") & (effect["phase"] == "tg"), "value"].iloc[0] == pytest.approx(
        0.05 / 4, abs=0.01)
    sweep = figures.sweep_figure(runs, list(times), style, [str(tmp_path / "s.png")])
    assert {"m@E4k1", "m@E8k1", "m@moe"} <= set(sweep["model"]) and (tmp_path / "s.png").stat().st_size > 10000
