"""The study's own method: the perf-footer parser (the fixtures' two formats, the older one, a real
footer of the engine we build), the prompt set, the llama-cli command, token gaps, the method
ratio and latency estimates; the integration test runs prompt cells of the tiny twins in rounds."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import FIXTURES, snakemake
from edgemoe import perf_footer
from edgemoe.estimates_method import latency, method_ratios
from edgemoe.prompt_cells import command, prompt_test_name, token_latency
from edgemoe.prompts import read_prompts

LLAMACPP = FIXTURES / "llamacpp"


# ---- the footer ------------------------------------------------------------------------------------
def test_the_cli_footer_parses_to_the_study_fields():
    f = perf_footer.parse((LLAMACPP / "perf-footer-cli.txt").read_text())
    assert f["load_ms"] == 12043.37
    assert (f["prompt_eval_ms"], f["prompt_tokens"]) == (444.75, 24)
    assert (f["eval_ms"], f["eval_runs"]) == (23582.66, 602)
    assert f["eval_tok_s"] == pytest.approx(25.53, abs=0.01)  # the footer's own figure
    assert (f["sampling_ms"], f["sampling_runs"]) == (25.55, 390)
    assert (f["total_ms"], f["total_tokens"]) == (737557.31, 626)


def test_the_timestamped_footer_parses_and_a_zero_eval_time_is_no_rate():
    f = perf_footer.parse((LLAMACPP / "perf-footer-timestamped.txt").read_text())
    assert (f["prompt_tokens"], f["prompt_eval_ms"], f["load_ms"]) == (9, 3.71, 44.49)
    assert f["eval_runs"] == 1 and f["eval_tok_s"] is None
    assert f["sampling_ms"] is None  # that footer has no sampler line


def test_the_older_llama_print_timings_footer_parses():
    text = """llama_print_timings:        load time =     123.45 ms
llama_print_timings:      sample time =      12.34 ms /    50 runs   (    0.25 ms per token,  4050.00 tokens per second)
llama_print_timings: prompt eval time =     456.78 ms /    24 tokens (   19.03 ms per token,    52.54 tokens per second)
llama_print_timings:        eval time =    1234.56 ms /    49 runs   (   25.19 ms per token,    39.69 tokens per second)
llama_print_timings:       total time =    1800.00 ms
"""
    f = perf_footer.parse(text)
    assert (f["eval_runs"], f["sampling_runs"], f["total_tokens"]) == (49, 50, None)


def test_a_truncated_footer_names_what_is_missing():
    text = (LLAMACPP / "perf-footer-cli.txt").read_text().split("llama_perf_context_print:        eval")[0]
    with pytest.raises(perf_footer.FooterError, match="missing eval time, total time .found load time, prompt eval"):
        perf_footer.parse(text)
    with pytest.raises(perf_footer.FooterError, match="no footer line at all"):
        perf_footer.parse("main: llama threadpool init\nSegmentation fault\n")


# ---- prompts and the command --------------------------------------------------------------------------
def test_the_shipped_prompt_set_has_twelve_varied_prompts():
    prompts = read_prompts(Path(__file__).parents[1] / "data/prompts/edge-12.jsonl")
    assert len(prompts) == 12 and len({p["kind"] for p in prompts}) == 12
    words = [len(p["text"].split()) for p in prompts]
    assert min(words) < 10 and max(words) > 80


def test_a_bad_prompt_line_names_the_file_and_line(tmp_path):
    f = tmp_path / "set.jsonl"
    f.write_text('{"id": "a", "kind": "k", "text": "hello"}\n{"id": "b", "kind": "k"}\n')
    with pytest.raises(ValueError, match=r"set\.jsonl:2: not a prompt"):
        read_prompts(f)


def test_the_command_is_greedy_non_interactive_and_exact_in_length(tmp_path):
    fake = tmp_path / "llama-cli"
    fake.write_text("#!/bin/sh\necho 'usage: -cnv, --conversation'\n")
    fake.chmod(0o755)
    cmd = command(str(fake), "m.gguf", tmp_path / "p.txt", 64, 7, 2, 0, use_mmap=False)
    assert cmd[cmd.index("-n") + 1] == "64" and "--ignore-eos" in cmd
    assert cmd[cmd.index("--temp") + 1] == "0" and cmd[cmd.index("--seed") + 1] == "7"
    assert "--no-mmap" in cmd and "--no-display-prompt" in cmd and "-no-cnv" not in cmd
    assert {"-v", "--log-timestamps", "--log-prefix"} <= set(cmd)  # the per-token eval lines
    newer = tmp_path / "llama-cli-new"
    newer.write_text("#!/bin/sh\necho '-no-cnv, --no-conversation'\n")
    newer.chmod(0o755)
    assert "-no-cnv" in command(str(newer), "m.gguf", tmp_path / "p.txt", 8, 1, 2, 0, use_mmap=True)
    assert prompt_test_name("edge-12", 64) == "cli-edge-12-g64"


def test_token_latency_comes_from_the_timestamped_eval_lines_of_a_real_run():
    text = (LLAMACPP / "llama-cli-f7cd133-tiny.stderr.txt").read_text()
    ttft, gaps = token_latency(text)
    assert ttft == pytest.approx(982.349 - 951.920)  # the prompt's pass to the first token's
    assert gaps == pytest.approx([1020.890 - 982.349, 1140.554 - 1020.890, 1148.284 - 1140.554, 1160.596 - 1148.284])
    assert perf_footer.parse(text)["eval_runs"] == len(gaps) + 1  # the engine's own footer parses too
    assert token_latency("no eval lines at all") == (None, [])


# ---- estimates -------------------------------------------------------------------------------------------
def _rows(kind, test, model, tps, round_, gaps=None):
    base = {"kind": kind, "test": test, "model": model, "status": "ok", "phase": "tg", "device": "d",
            "engine": "e", "quant": "Q4_K_M", "weights_source": "twin", "round": round_, "warmup": False,
            "cell_id": f"{kind}/{model}/{test}/{round_}"}
    return [{**base, "tokens_per_s": v, "ttft_ms": 50.0 + i, "time_ns": int(1e9 / v),
             "token_gaps_ms": json.dumps(gaps) if gaps is not None else None} for i, v in enumerate(tps)]


def test_the_method_ratio_is_paired_inside_rounds():
    rows = []
    for k in range(6):
        drift = 1 + 0.1 * k  # the host gets faster round by round; the pairing cancels it
        rows += _rows("bench", "tg64", "m", [10 * drift] * 3, k) + _rows("prompt", "cli-x-g64", "m", [9 * drift] * 12, k,
                                                                         [100.0])
    r = method_ratios(pd.DataFrame(rows))
    assert len(r) == 1 and r.iloc[0]["reference"] == "llama-bench tg64" and r.iloc[0]["test"] == "cli-x-g64"
    assert r.iloc[0]["value"] == pytest.approx(0.9) and r.iloc[0]["lo"] == pytest.approx(0.9)


def test_latency_percentiles_pool_every_gap_and_ttft_is_the_median_over_runs():
    rng = np.random.default_rng(1)
    rows = []
    for k in range(3):
        rows += _rows("prompt", "cli-x-g64", "m", [10.0] * 4, k, list(rng.exponential(100.0, 63)))
    est = latency(pd.DataFrame(rows))
    p50 = est[est["quantity"] == "itl_p50_ms"].iloc[0]
    p99 = est[est["quantity"] == "itl_p99_ms"].iloc[0]
    assert 55 < p50["value"] < 85 and p50["lo"] < p50["value"] < p50["hi"]  # exponential: median = ln2 x 100
    assert p99["value"] > 3 * p50["value"] and p99["method"] == "runs-pooled-quantile"
    ttft = est[est["quantity"] == "ttft_ms"].iloc[0]
    assert ttft["value"] == pytest.approx(51.5)


# ---- end to end -------------------------------------------------------------------------------------------
@pytest.mark.integration
def test_prompt_cells_run_in_rounds_beside_llama_bench_and_the_method_tables_show_them(work):
    from edgemoe.records import read_parquet

    snakemake(work, "figures/all", "--configfile", "config/smoke.yaml", "tests/configs/prompts-smoke.yaml")
    runs = read_parquet(work / "results/runs.parquet").to_pandas()
    prompt = runs[runs["kind"] == "prompt"]
    assert set(prompt["test"]) == {"cli-edge-12-g8"} and (prompt["status"] == "ok").all()
    assert prompt["prompt_id"].nunique() == 12 and set(prompt["round"]) == {0, 1}
    tg = prompt[prompt["phase"] == "tg"]
    assert (tg["tokens"] == 7).all()  # 8 generated: the first from the prompt's pass, 7 eval runs
    assert (prompt["program"] == "llama-cli").all() and prompt["prompt_sha256"].str.len().eq(64).all()
    assert tg["token_gaps_ms"].map(lambda g: len(json.loads(g))).eq(6).all() and (tg["token_passes"] == 7).all()
    assert tg["ttft_ms"].gt(0).all()
    # the footer of the engine we build parses (a real one, captured by the run)
    err = next((work / "results/rounds").rglob("cli-edge-12-g8.raw")) / "qa-short.r0.stderr.log"
    assert perf_footer.parse(err.read_text())["eval_runs"] == 7
    method = pd.read_csv(work / "figures/tables/method.csv")
    assert set(method["model"]) == {"olmoe-tiny", "llama-tiny", "qwen2-tiny", "gemma2-tiny"}
    assert method["ratio"].between(0.05, 5).all()
    lat = pd.read_csv(work / "figures/tables/latency.csv")
    assert {"prompts (llama-cli)", "profile (edgemoe-profile steps)"} <= set(lat["source"])
    throughput = pd.read_csv(work / "figures/tables/throughput.csv")
    assert set(throughput["method"]) == {"llama-bench", "llama-cli prompts (perf footer)"}
    assert (work / "figures/latency.png").stat().st_size > 10_000
