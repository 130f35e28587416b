"""Expert locality through the workflow (integration tier, after tests/test_pipeline.py in the same
work folder): the tiny OLMoE twin at router skew 0 and 1, decoding greedily and repeating one
token, the release that rebuilds the locality table, and a GGUF made by the real-weights path (a
tiny checkpoint served by the local hub)."""

import gzip
import hashlib
import json
import subprocess
import sys

import pandas as pd
import pytest
from conftest import snakemake

from edgemoe.prompts import read_prompts
from edgemoe.locality_data import read_table

pytestmark = pytest.mark.integration
SMOKE = ["--configfile", "config/smoke.yaml"]
LOCALITY = ["--configfile", "config/smoke.yaml", "tests/locality-smoke.yaml"]


@pytest.fixture(scope="module")
def twins_run(work):
    snakemake(work, "figures/all", *LOCALITY)
    return read_table(work / "results/locality.parquet").to_pandas()


def test_twins_routing_is_recorded_per_step_and_layer_with_what_was_decoded(work, twins_run):
    sel = twins_run
    prompts = {p["id"]: p for p in read_prompts(work / "data/prompts/edge-12.jsonl")}
    # 2 twins x (greedy, repeat) x 12 prompts x 16 steps x 2 MoE layers, and text: as many steps as each prompt has
    assert sel.groupby(["model", "decode"]).size().to_dict() == {
        **{(m, d): 384 for m in ("olmoe-tiny", "olmoe-tiny@skew1") for d in ("greedy", "repeat")},
        **{
            (m, "text"): 2 * sel[(sel.model == m) & (sel.decode == "text")].drop_duplicates("prompt_id")["n_gen"].sum()
            for m in ("olmoe-tiny", "olmoe-tiny@skew1")
        },
    }
    text = sel[sel["decode"] == "text"].drop_duplicates("prompt_id")
    assert text["n_gen"].between(1, 16).all() and (text["n_gen"] == 16).any() and (text["n_gen"] < 16).any()
    for ids in sel["experts"]:
        assert len(set(ids)) == 2 and all(0 <= e < 8 for e in ids)
    assert sel["is_twin"].all() and set(sel["weights_source"]) == {"twin"}
    assert sel.groupby("model")["router_skew"].first().to_dict() == {"olmoe-tiny": 0, "olmoe-tiny@skew1": 1}
    for r in sel.drop_duplicates(["run_id", "prompt_id"]).itertuples():
        assert r.prompt_sha256 == hashlib.sha256(prompts[r.prompt_id]["text"].encode()).hexdigest()
        assert r.n_prompt_tokens >= (1 if r.decode == "text" else 2)  # text: all but the fed tokens are the prompt
        assert r.engine_commit == "f7cd13301c2a88f97073fd119072b4cc92c08df1"
        info = json.loads(next((work / "results/models" / r.model).rglob("Q4_K_M.json")).read_text())
        assert r.gguf_sha256 == info["gguf_sha256"]
        build = json.loads((work / f"results/engine/{r.engine}/build/{r.device}/build-info.json").read_text())
        assert r.patches_sha256 == build["patches_sha256"]
        assert r.profiler_sha256 == build["binaries"]["edgemoe-profile"]["sha256"]
    fed = sel.drop_duplicates(["run_id", "prompt_id", "step"]).groupby(["decode", "run_id", "prompt_id"])["token"]
    assert (fed.nunique().loc["repeat"] == 1).all()  # one id again and again
    assert (fed.nunique().loc["greedy"] > 1).any()  # the model's own text
    summary = json.loads(next((work / "results/locality").rglob("greedy-edge-12.json")).read_text())
    assert len(summary["prompts"]) == 12 and all(p["decode_tokens"] for p in summary["prompts"])
    for p in json.loads(next((work / "results/locality").rglob("text-edge-12.json")).read_text())["prompts"]:
        assert prompts[p["prompt_id"]]["text"].endswith(p["decode_text"])  # the text's own last tokens, fed


def test_twins_locality_table_and_figure(work, twins_run):
    t = pd.read_csv(work / "figures/tables/locality.csv")
    pooled = t[t["layer"] == -1].set_index(["model", "decode"])
    for m in ("olmoe-tiny", "olmoe-tiny@skew1"):
        # what is decoded matters: one token again and again routes alike step after step
        assert pooled.loc[(m, "repeat"), "reuse_share"] > pooled.loc[(m, "text"), "reuse_share"]
        assert pooled.loc[(m, "repeat"), "token_repeat_share"] == 1 > pooled.loc[(m, "text"), "token_repeat_share"]
        for mode in ("text", "greedy", "repeat"):
            r = pooled.loc[(m, mode)]
            assert 0 <= r["lru_hit_1k"] <= r["lru_hit_2k"] <= r["lru_hit_4k"] <= 1 - r["compulsory_share"] + 1e-9
    assert set(t["layer"]) == {-1, 0, 1} and (t["uniform_reuse_share"] == 0.25).all()
    drawn = pd.read_csv(work / "figures/locality.csv")
    assert set(drawn["panel"]) == {"lru_hit_rate", "uniform_lru_hit_rate", "reuse_share"}
    caption = (work / "figures/captions/locality.rst").read_text()
    assert "decoded text (the prompt's own tokens" in caption and "greedy (the model's own" in caption
    assert "never a trained model's" in caption and "'edge-12'" in caption
    manifest = (work / "figures/all").read_text()
    assert "figures/locality.png" in manifest and "figures/tables/locality.md" in manifest
    assert "locality" not in set(pd.read_parquet(work / "results/runs.parquet")["kind"])  # never in the run table


def test_locality_table_and_figure_rebuild_from_a_release(work, twins_run):
    fresh = pd.read_csv(work / "figures/tables/locality.csv")
    subprocess.run(
        [sys.executable, "-m", "edgemoe.release", "results/runs.parquet", "data/released/loc-rel"],
        cwd=work,
        check=True,
        capture_output=True,
    )
    path = work / "data/released/loc-rel/locality.jsonl.gz"
    assert len(gzip.decompress(path.read_bytes()).decode().splitlines()) == len(twins_run)
    assert "locality.jsonl.gz" in (work / "data/released/loc-rel/README.md").read_text()
    released = [*SMOKE, "--config", "runs=released", "release=loc-rel"]
    dry = snakemake(work, "-n", "--forceall", "figures/all", *released).stdout
    assert "collect_locality" in dry and "locality_cell" not in dry and "twin_model" not in dry
    snakemake(work, "figures/all", *released)
    pd.testing.assert_frame_equal(pd.read_csv(work / "figures/tables/locality.csv"), fresh)
    assert (work / "figures/locality.png").is_file()


def test_locality_of_a_gguf_made_by_the_real_weights_path(work, twins_run):
    """A tiny OLMoE checkpoint from the local hub, downloaded, converted and quantized by the
    workflow (weights=hf), beside its own twin (M@skew0: always a twin)."""
    import importlib.util

    for mod in ("torch", "transformers", "safetensors"):
        if importlib.util.find_spec(mod) is None:
            pytest.skip(f"the hf extra is not installed ({mod} missing): ./setup.sh pipeline,hf,test")
    import yaml
    from hf_checkpoints import build_checkpoint
    from hub_server import HubServer

    from edgemoe.architectures import spec_from_hf_config

    src = next((work / "results/engine").glob("llama.cpp-f7cd13301/source"))
    ckpt = work / "hf-checkpoints" / "olmoe-locality"
    build_checkpoint("olmoe", ckpt, src, seed=0, cache_dir=work / "hf-cache")
    spec = spec_from_hf_config(json.loads((ckpt / "config.json").read_text()))
    with HubServer() as hub:
        commit = hub.add_repo("test-org/tiny-olmoe-locality", ckpt)
        cfg = {
            "weights": "hf",
            "models": {
                "hf-olmoe-loc": {
                    "family": "moe",
                    "twin": {"seed": 0},
                    "spec": spec,
                    "hf": {"repo": "test-org/tiny-olmoe-locality", "revision": "main"},
                }
            },
            "experiment": {
                "models": ["hf-olmoe-loc"],
                "baseline": "hf-olmoe-loc",
                "quants": ["Q4_K_M"],
                "tests": [{"name": "hf-check", "n_prompt": 16, "n_gen": 4}],
                "repetitions": 1,
                "use_mmap": True,
                "timeout_s": 120,
                "locality": {
                    "enabled": True,
                    "models": ["hf-olmoe-loc", "hf-olmoe-loc@skew0"],
                    "prompts": "edge-12",
                    "n_gen": 8,
                    "decode": ["greedy"],
                },
            },
        }
        (work / "hf-locality.yaml").write_text(yaml.safe_dump(cfg))
        env = {
            "HF_ENDPOINT": hub.endpoint,
            "HF_HOME": str(work / "hf-home"),
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_DISABLE_XET": "1",
        }
        proc = snakemake(work, "locality_all", *SMOKE, "hf-locality.yaml", env=env)
    assert "bench_cell" not in proc.stdout + proc.stderr  # the locality target runs no benchmark
    sel = read_table(work / "results/locality.parquet").to_pandas()
    assert sel.groupby("model").size().to_dict() == {"hf-olmoe-loc": 12 * 8 * 2, "hf-olmoe-loc@skew0": 12 * 8 * 2}
    real = sel[sel["model"] == "hf-olmoe-loc"].iloc[0]
    assert real["weights_source"] == "hf" and not real["is_twin"] and real["hf_revision"] == commit
    assert real["hf_repo"] == "test-org/tiny-olmoe-locality" and pd.isna(real["router_skew"])
    twin = sel[sel["model"] == "hf-olmoe-loc@skew0"].iloc[0]
    assert twin["is_twin"] and twin["derived_from"] == "hf-olmoe-loc" and twin["gguf_sha256"] != real["gguf_sha256"]
    md = (work / "figures/tables/locality.md").read_text()
    assert "hf-olmoe-loc (hf weights)" in md and "hf-olmoe-loc@skew0 (twin, skew 0)" in md
    assert "hf-olmoe-loc: hf weights (test-org/tiny-olmoe-locality@" in md and "never a trained model's" in md
    assert (work / "figures/locality.png").is_file()
