"""Interleaved decode end to end (edgemoe/interleave.py): the tiny twins' decode in one process per
round beside plain prefill cells, through the tables. In its own file after tests/test_pipeline.py,
whose tests count the rounds designs in the shared work folder."""
import json

import pandas as pd
import pytest

from conftest import snakemake


@pytest.mark.integration
def test_interleaved_decode_runs_in_rounds_beside_prefill_cells_and_reaches_the_tables(work):
    from edgemoe.records import read_parquet

    snakemake(work, "figures/all", "--configfile", "config/smoke.yaml", "tests/configs/interleave-smoke.yaml")
    runs = read_parquet(work / "results/runs.parquet").to_pandas()
    tg = runs[(runs["test"] == "tg8") & ~runs["warmup"].fillna(False).astype(bool)]
    assert (tg["status"] == "ok").all() and (tg["program"] == "edgemoe-interleave").all()
    assert tg.groupby("model").size().to_dict() == {m: 2 for m in ("olmoe-tiny", "llama-tiny", "qwen2-tiny",
                                                                   "gemma2-tiny")}  # 1 counted round x 2 repetitions
    assert tg.groupby("round")["cell_start_utc"].nunique().eq(1).all()  # one process per round
    pp = runs[runs["test"] == "pp16"]
    assert pp["program"].isna().all() and pp["peak_rss_bytes"].gt(0).all()
    throughput = pd.read_csv(work / "figures/tables/throughput.csv")
    assert set(throughput.loc[throughput["test"] == "tg8", "method"]) == {"edgemoe-interleave (turns of 4 tokens)"}
    assert throughput.loc[throughput["test"] == "tg8", "gen_ratio_to_baseline"].notna().sum() == 3
    raw = next((work / "results/rounds").rglob("tg8.edgemoe-interleave.jsonl"))
    assert json.loads(raw.read_text().splitlines()[-1])["event"] == "done"
