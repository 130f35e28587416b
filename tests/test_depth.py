"""Depth cells (edgemoe.depth): names, flags, method choice, and both methods' records from
stand-in programs that print what the real ones print."""
import json
import os
import stat
import sys
import textwrap
from pathlib import Path

import pytest

from edgemoe import llamabench
from edgemoe.cells import CellSpec
from edgemoe import depth as D
from edgemoe.depth import cache_args, parse_test_name, resolve_method, run_depth_cell
from edgemoe.engine import changelog_commit

OLD_LOG = """llama_new_context_with_model: n_ctx         = 4128
llama_kv_cache_init:        CPU KV buffer size =   516.00 MiB
llama_new_context_with_model: KV self size  =  516.00 MiB, K (f16):  258.00 MiB, V (f16):  258.00 MiB
"""
NEW_LOG = """llama_context: n_ctx         = 1056
llama_kv_cache:        CPU KV buffer size =    70.12 MiB
llama_kv_cache: size =   70.12 MiB (  1056 cells,  16 layers,  1/1 seqs), K (q8_0):   35.06 MiB, V (q8_0):   35.06 MiB
"""


def test_names_round_trip_and_defaults_stay_short():
    assert D.test_name(512, "f16", "auto") == "depth512"
    assert D.test_name(512, "q8_0", "llama-bench") == "depth512-q8_0-llama-bench"
    for name in ["depth0", "depth4078-q8_0", "depth512-edgemoe-profile", "depth1-q4_0-llama-bench"]:
        assert D.test_name(*parse_test_name(name)) == name
    with pytest.raises(ValueError):
        parse_test_name("depth512-bf16")


def test_quantized_cache_turns_flash_attention_on():
    assert cache_args("f16") == ()
    assert cache_args("q8_0") == ("-ctk", "q8_0", "-ctv", "q8_0", "-fa", "1")
    with pytest.raises(ValueError, match="allowed"):
        cache_args("q2_k")


def test_kv_cache_size_and_context_from_both_engines_logs():
    assert llamabench.logged_kv_cache(OLD_LOG) == (516 * 2**20, 4128)
    assert llamabench.logged_kv_cache(NEW_LOG) == (int(70.12 * 2**20), 1056)
    assert llamabench.logged_kv_cache("nothing here") == (None, None)


def test_changelog_with_an_abbreviated_commit():
    log = "## [0.3.36]\n\n- feat: update llama.cpp to ggml-org/llama.cpp@0c1e57098\n\n## [0.3.35]\n"
    assert changelog_commit(log, "0.3.36") == "0c1e57098"


def program(path: Path, body: str) -> str:
    path.write_text(f"#!{sys.executable}\n" + textwrap.dedent(body))
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return str(path)


FAKE_BENCH = """
import json, sys
a = sys.argv[1:]
if "--help" in a:
    print("  -d, --n-depth <n>" if "{depth}" == "yes" else "  -p, --n-prompt <n>")
    sys.exit(0)
v = lambda flag: a[a.index(flag) + 1]
p, n, r, d = int(v("-p")), int(v("-n")), int(v("-r")), int(v("-d"))
ctk = v("-ctk") if "-ctk" in a else "f16"
kv = (p + n + d) * 0.0625
sys.stderr.write(f"llama_context: n_ctx = {{p + n + d}}\\nllama_kv_cache: size = {{kv:.2f}} MiB (...)\\n")
ns = [int(1e9 * max(p, n) / (100.0 if n else 400.0))] * r
print(json.dumps({{"n_prompt": p, "n_gen": n, "n_depth": d, "n_threads": int(v("-t")), "type_k": ctk, "type_v": ctk,
                  "flash_attn": "-fa" in a, "samples_ns": ns, "model_type": "fake", "model_n_params": 1,
                  "build_commit": "0c1e570", "test_time": "2026-11-22T00:00:00Z"}}), flush=True)
"""

FAKE_PROFILE = """
import json, sys
a = sys.argv[1:]
v = lambda flag: a[a.index(flag) + 1]
p, n = int(v("-p")), int(v("-n"))
sys.stderr.write("llama_new_context_with_model: KV self size  =  2.00 MiB, K (f16): 1.00 MiB\\n")
first = 50_000_000 if int(v("--warmup")) == 0 else 10_000_000  # the step right after the prompt is slow
json.dump({"n_prompt": p, "n_ctx": p + n + 3, "prompt_ms": p * 2.5, "decode_wall_ns": [first] + [10_000_000] * (n - 1),
           "kv_cache_mib": 2.0, "type_k": v("-ctk") if "-ctk" in a else "f16", "flash_attn": "-fa" in a},
          open(v("--summary"), "w"))
"""


def spec(tmp_path, exe, test):
    info = {"model": "m", "family": "dense", "weights_source": "twin", "params_total": 1, "params_active": 1,
            "quant": "Q4_K_M", "gguf_sha256": "0", "gguf_bytes": 1}
    build = {"engine": "e", "commit": "c", "source": {}, "patches": [], "cmake_flags": [], "c_compiler": "cc",
             "cxx_compiler": "c++", "binaries": {}}
    import gguf
    import numpy as np

    model = tmp_path / "m.gguf"
    w = gguf.GGUFWriter(str(model), "llama")
    w.add_tensor("token_embd.weight", np.zeros((8, 32), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return CellSpec(cell_id=f"dev/e/m/t/Q4_K_M/{test}", device_id="dev", backend="cpu", bench_exe=exe,
                    model_path=str(model), model_info=info, build_info=build, test=test, n_prompt=0, n_gen=8,
                    repetitions=2, threads=1, n_gpu_layers=0, use_mmap=True, timeout_s=60,
                    memory_ceiling_bytes=2**34)


@pytest.fixture
def tools(tmp_path):
    return {"llama-bench": program(tmp_path / "llama-bench", FAKE_BENCH.format(depth="yes")),
            "edgemoe-profile": program(tmp_path / "edgemoe-profile", FAKE_PROFILE)}


def test_auto_takes_llama_bench_only_where_it_has_depth(tmp_path, tools):
    old = program(tmp_path / "old-bench", FAKE_BENCH.format(depth="no"))
    assert resolve_method("auto", tools["llama-bench"]) == "llama-bench"
    assert resolve_method("auto", old) == "edgemoe-profile"
    with pytest.raises(ValueError, match="has no -d"):
        resolve_method("llama-bench", old)


@pytest.mark.parametrize("method", ["llama-bench", "edgemoe-profile"])
def test_both_methods_record_the_same_fields(tmp_path, tools, method):
    os.environ.setdefault("EDGEMOE_TEST", "1")
    s = spec(tmp_path, tools["llama-bench"], D.test_name(64, "q8_0", method))
    out = tmp_path / f"out-{method}"
    out.mkdir()
    rows = run_depth_cell(s, method=method, depth=64, cache_type="q8_0", repetitions=2, tools=tools,
                          out_dir=out, stderr_path=tmp_path / f"{method}.log", lock_path=tmp_path / "lock")
    assert {r["status"] for r in rows} == {"ok"}
    assert {r["kind"] for r in rows} == {"depth"} and {r["depth_method"] for r in rows} == {method}
    tg = [r for r in rows if r["phase"] == "tg"]
    pp = [r for r in rows if r["phase"] == "pp"]
    assert tg and all(r["n_depth"] == 64 for r in tg)
    assert len(pp) >= 1 and all(r["n_depth"] == 0 and r["tokens"] == 64 for r in pp)
    assert all(r["kv_cache_bytes"] and r["n_ctx"] and r["type_k"] == "q8_0" for r in rows)
    if method == "llama-bench":
        assert all(r["flash_attn"] == "True" for r in rows)  # a quantized V cache needs it
        assert tg[0]["tokens_per_s"] == pytest.approx(100.0) and pp[0]["tokens_per_s"] == pytest.approx(400.0)
        assert "llama_kv_cache: size" in (tmp_path / f"{method}.log").read_text()  # one log for the cell
    else:  # 8 tokens right after the prompt, the first one included (as llama-bench -d times them)
        assert [r["tokens_per_s"] for r in tg] == pytest.approx([8 / (0.05 + 7 * 0.01)] * 2)
        assert [r["tokens_per_s"] for r in pp] == pytest.approx([400.0] * 2)
    assert len(tg) == len(pp) == 2 and all(r["tokens"] == r["n_gen"] == 8 for r in tg)  # one record per repetition
    json.dumps(rows)  # records are plain JSON


def test_depth_table_keeps_cache_types_and_methods_apart():
    import pandas as pd

    from edgemoe.tables import depth_table

    rows = []
    for model, speed in [("moe", 40.0), ("dense", 50.0)]:
        for cache, kv_mib in [("f16", 64.0), ("q8_0", 34.0)]:
            for method, factor in [("llama-bench", 1.0), ("edgemoe-profile", 0.98)]:
                for i in range(5):
                    rows.append({"kind": "depth", "test": D.test_name(1024, cache, method), "device": "d", "engine": "e",
                                 "quant": "Q4_K_M", "model": model, "phase": "tg", "status": "ok",
                                 "tokens_per_s": speed * factor + i * 0.1, "n_ctx": 2048, "kv_bytes_per_token": 32768,
                                 "kv_cache_bytes": int(kv_mib * 2**20), "peak_rss_bytes": 2**30,
                                 "memory_ceiling_bytes": 2**34, "depth_method": method})
    t = depth_table(pd.DataFrame(rows), "dense")
    assert len(t) == 2 * 2 * 2 and set(t["method"]) == {"llama-bench", "edgemoe-profile"}
    moe = t[t["model"] == "moe"].set_index(["kv_cache", "method"])
    assert moe.loc[("q8_0", "llama-bench"), "kv_cache_MiB_computed"] == pytest.approx(64 * 34 / 64)
    assert moe.loc[("f16", "llama-bench"), "kv_cache_MiB_computed"] == pytest.approx(64.0)
    assert moe.loc[("f16", "edgemoe-profile"), "ratio_to_baseline"] == pytest.approx(0.8, rel=0.01)


def test_weight_loading_flag_follows_the_engine(tmp_path):
    old = program(tmp_path / "old", 'print("  -mmp, --mmap <0|1>")')
    new = program(tmp_path / "new", 'print("  -lm, --load-mode <auto|none|mmap|mlock|mmap+mlock|dio>")')
    assert llamabench.load_args(old, True) == ["-mmp", "1"]
    assert llamabench.load_args(new, False) == ["-lm", "none"]
    assert llamabench.load_args(str(tmp_path / "missing"), True) == ["-mmp", "1"]


def test_flash_attention_reads_the_same_from_both_engines():
    assert [llamabench.flash_attn_name(v) for v in (True, False, 1, 0, -1, "true")] == \
        ["True", "False", "True", "False", "auto", "True"]


def test_flash_attention_is_always_explicit_and_given_once():
    cmd = llamabench.command("llama-bench", "m.gguf", 0, 32, 3, 2, 0, True)
    assert cmd[cmd.index("-fa") + 1] == "0"
    cmd = llamabench.command("llama-bench", "m.gguf", 0, 32, 3, 2, 0, True, extra=cache_args("q8_0"))
    assert cmd.count("-fa") == 1 and cmd[cmd.index("-fa") + 1] == "1"


def test_a_failed_run_of_the_program_is_the_depth_cells_one_record(tmp_path, tools):
    """A run that fails after a good one (here the second runs out of memory) makes the cell a
    failure with one record, as a llama-bench cell is; nothing half-measured is kept."""
    state = tmp_path / "runs"
    flaky = program(tmp_path / "flaky-profile", f"""
import pathlib, sys
state = pathlib.Path({str(state)!r})
if state.exists():
    sys.stderr.write("ggml_backend_cpu_buffer_type_alloc_buffer: failed to allocate buffer of size 99\\n")
    sys.exit(1)
state.write_text("1")
exec(compile({FAKE_PROFILE!r}, "fake", "exec"))
""")
    s = spec(tmp_path, tools["llama-bench"], D.test_name(64, "f16", "edgemoe-profile"))
    rows = run_depth_cell(s, method="edgemoe-profile", depth=64, cache_type="f16", repetitions=3,
                          tools={**tools, "edgemoe-profile": flaky}, out_dir=tmp_path,
                          stderr_path=tmp_path / "cell.log", lock_path=tmp_path / "lock")
    assert len(rows) == 1 and rows[0]["status"] == "oom" and "failed to allocate" in rows[0]["status_reason"]
    assert rows[0]["depth_method"] == "edgemoe-profile" and rows[0]["n_depth"] == 64
    assert "run 1" in (tmp_path / "cell.log").read_text()  # the failing run's log is in the cell's log
