"""Pre-flight (edgemoe.preflight): model sizes from the architecture, the peak disk of the planned
jobs, a real small file system that is too small, and cells that cannot fit the device's memory."""
import copy
import shutil
import subprocess

import pytest

from edgemoe import preflight as P
from edgemoe.architectures import ArchSpec
from edgemoe.config import Experiment
from edgemoe.twins import write_twin
from test_twins import SPEC, VOCAB

GB = 1e9


def model_jobs(exp):
    return [P.Job("twin_model", {"model": m, "tag": exp.models[m].weights_tag},
                  tuple(exp.model_file(m, q) for q in exp.quants)) for m in exp.models]


# Sizes of the study's twins as written here (twin writer, llama-quantize of llama.cpp f7cd13301)
WRITTEN = {("olmoe-1b-7b", "F16"): 13_844_565_312, ("olmoe-1b-7b", "Q4_K_M"): 4_213_511_552,
           ("llama-3.2-1b", "Q4_K_M"): 807_689_952, ("qwen2.5-1.5b", "F16"): 3_093_666_144,
           ("qwen2.5-1.5b", "Q4_K_M"): 986_045_312, ("gemma-2-2b", "F16"): 5_235_889_056}


@pytest.mark.parametrize("model, quant", WRITTEN)
def test_model_sizes_cover_the_files_written_within_half_a_percent(default_config, model, quant):
    spec = Experiment(default_config).models[model].spec
    assert WRITTEN[model, quant] <= P.gguf_bytes(spec, quant) <= WRITTEN[model, quant] * 1.005


def test_the_estimate_of_a_twin_covers_the_file_the_twin_writer_writes(tmp_path):
    spec = ArchSpec.from_config("t", SPEC)
    write_twin(spec, "t", 7, VOCAB, tmp_path / "t.gguf", progress=False)
    size = (tmp_path / "t.gguf").stat().st_size
    assert size <= P.gguf_bytes(spec, "F16") <= size + (2 << 20)  # the header estimate is generous


def test_tensor_types_follow_llama_quantize(default_config):
    exp = Experiment(default_config)
    llama = exp.models["llama-3.2-1b"].spec
    types = {t.name: P.tensor_type(llama, t, "Q4_K_M") for t in llama.tensors()}
    assert types["token_embd.weight"] == "Q6_K"  # tied: the output matrix
    assert types["blk.0.attn_v.weight"] == "Q6_K" and types["blk.3.attn_v.weight"] == "Q4_K"  # use_more_bits
    assert types["blk.4.ffn_down.weight"] == "Q6_K" and types["blk.4.ffn_up.weight"] == "Q4_K"
    assert types["blk.0.attn_norm.weight"] == "F32"
    tiny = ArchSpec.from_config("t", SPEC)  # 8 experts: attn_k/attn_v at Q8_0
    assert {P.tensor_type(tiny, t, "Q4_K_M") for t in tiny.tensors() if t.kind in ("attn_k", "attn_v")} == {"Q8_0"}
    odd = ArchSpec.from_config("t", dict(SPEC, n_ff=96))  # rows of 96: no whole 256-blocks, Q4_K -> Q5_0
    down = {t.name: P.tensor_type(odd, t, "Q4_K_M") for t in odd.tensors() if "ffn_down" in t.name}
    assert down == {"blk.0.ffn_down_exps.weight": "Q5_0", "blk.1.ffn_down_exps.weight": "Q8_0"}  # Q6_K -> Q8_0


def test_peak_is_everything_kept_plus_the_largest_f16_and_done_jobs_need_nothing(default_config, tmp_path,
                                                                                  monkeypatch):
    cfg = copy.deepcopy(default_config)
    cfg["experiment"]["counterfactuals"] = []  # the study's four models
    direct = P.disk_needs(Experiment(cfg), model_jobs(Experiment(cfg)), exists=lambda p: 0)
    assert all(n.temporary == 0 for n in direct if n.folder.startswith("results/models/"))  # twins written quantized
    cfg["experiment"]["quants"] = ["Q4_K_M", "BF16"]  # BF16 comes from the F16 and llama-quantize
    exp = Experiment(cfg)
    monkeypatch.chdir(tmp_path)  # no results here
    needs = P.disk_needs(exp, model_jobs(exp), exists=lambda p: 0)
    models = {n.folder.split("/")[-1]: n for n in needs if n.folder.startswith("results/models/")}
    def quantized(model):
        return sum(P.gguf_bytes(exp.models[model].spec, q) for q in exp.quants)

    kept = sum(quantized(m) for m in exp.models)
    assert sum(n.kept for n in models.values()) == kept
    olmoe_f16 = P.gguf_bytes(exp.models["olmoe-1b-7b"].spec, "F16")
    assert P.peak_bytes(list(models.values())) == kept + olmoe_f16
    gemma_f16 = P.gguf_bytes(exp.models["gemma-2-2b"].spec, "F16")
    assert P.peak_bytes(list(models.values()), parallel=2) == kept + olmoe_f16 + gemma_f16
    # only the jobs Snakemake plans count; a rerun first removes the outputs it replaces
    one = [j for j in model_jobs(exp) if j.wildcards["model"] == "llama-3.2-1b"]
    rerun = P.disk_needs(exp, one, exists=lambda p: 1000)
    assert [n.kept for n in rerun if n.folder.startswith("results/models/")] == [
        quantized("llama-3.2-1b") - 1000 * len(exp.quants)]
    assert P.disk_needs(exp, [], exists=lambda p: 0) == []


def test_a_killed_jobs_temporaries_count_as_freed(default_config, tmp_path, monkeypatch):
    exp = Experiment(default_config)
    job = next(j for j in model_jobs(exp) if j.wildcards["model"] == "llama-3.2-1b")
    folder = tmp_path / job.outputs[0].rsplit("/", 1)[0]
    folder.mkdir(parents=True)
    (folder / "F16.tmp.gguf").write_bytes(b"x" * 1000)
    (folder / ".F16.tmp.gguf.abc123.tmp").write_bytes(b"x" * 500)
    monkeypatch.chdir(tmp_path)
    [need] = [n for n in P.disk_needs(exp, [job], exists=lambda p: 0) if n.folder.startswith("results/models")]
    assert need.kept == sum(P.gguf_bytes(exp.models["llama-3.2-1b"].spec, q) for q in exp.quants) - 1500


@pytest.fixture
def small_fs(tmp_path):
    """A real 20 MB file system (tmpfs) at tmp_path/fs."""
    where = tmp_path / "fs"
    where.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=20m", "tmpfs", str(where)], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {proc.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=True)


def test_a_disk_too_small_for_the_run_stops_it_before_any_job(smoke_config, small_fs, monkeypatch):
    exp = Experiment(smoke_config)
    (small_fs / "results").mkdir()
    monkeypatch.chdir(small_fs)
    with pytest.raises(P.PreflightError) as ei:
        P.run_preflight(exp, model_jobs(exp), cores=4)
    msg = str(ei.value)
    print(msg)
    assert f"not enough free disk for this run in {small_fs}/results" in msg
    need = P.peak_bytes(P.disk_needs(exp, model_jobs(exp), exists=lambda p: 0))
    free = shutil.disk_usage(small_fs).free
    assert free < 21e6 and f"it needs up to {P.human(need)} at peak, {P.human(free)} are free" in msg
    assert f"-tiny (twin): {exp.quants[0]} " in msg  # the largest parts are named
    assert "fewer models or quants" in msg and "ln -s" in msg
    # told to warn instead, it says the same and goes on
    [line] = [ln for ln in P.run_preflight(exp, model_jobs(exp), cores=4, settings={"disk": "warn"}) if "disk" in ln]
    assert line.startswith("pre-flight: not enough free disk")


def test_a_run_that_fits_prints_need_and_free(smoke_config, tmp_path, monkeypatch):
    exp = Experiment(smoke_config)
    monkeypatch.chdir(tmp_path)
    [line] = [ln for ln in P.run_preflight(exp, model_jobs(exp), cores=4) if "disk" in ln]
    assert line.startswith("pre-flight: disk: this run needs up to ") and f"in {tmp_path}" in line
    assert "GB free there" in line


def test_a_symlinked_part_of_results_is_checked_on_its_own_file_system(smoke_config, tmp_path, small_fs,
                                                                       monkeypatch):
    exp = Experiment(smoke_config)
    (tmp_path / "results").mkdir()
    (tmp_path / "results/models").symlink_to(small_fs)
    monkeypatch.chdir(tmp_path)
    checks = P.check_disk(P.disk_needs(exp, model_jobs(exp), exists=lambda p: 0))
    assert {c.folder for c in checks} == {str(tmp_path / "results/models"), str(tmp_path / "results")}
    assert not next(c for c in checks if c.folder.endswith("models")).ok


def test_cells_whose_model_cannot_fit_the_device_are_warned_about(default_config):
    cfg = copy.deepcopy(default_config)
    cfg["device"] = "orin-nano-8gb"
    cfg["experiment"]["quants"] = ["Q4_K_M", "F16"]
    cfg["experiment"]["counterfactuals"] = []
    exp = Experiment(cfg, host_device="orin-nano-8gb")
    unfit = P.unfit_cells(exp)
    assert list(unfit) == [("olmoe-1b-7b", "F16")]  # 13.8 GB of weights; Q4_K_M's 4.2 GB fit in 8 GB
    assert "more than device orin-nano-8gb's memory ceiling of 8.00 GB" in unfit[("olmoe-1b-7b", "F16")]
    lines = P.run_preflight(exp, [], cores=4, settings={"disk": "off"})
    assert lines == [f"pre-flight: memory: warning: {unfit[('olmoe-1b-7b', 'F16')]}: its cells will likely run "
                     "out of memory (recorded as oom)"]


def test_released_data_runs_no_cell_and_needs_next_to_nothing(smoke_config, tmp_path, monkeypatch):
    cfg = copy.deepcopy(smoke_config)
    cfg["runs"] = "released"
    exp = Experiment(cfg)
    monkeypatch.chdir(tmp_path)
    lines = P.run_preflight(exp, [P.Job("tables", {}, ("figures/tables/throughput.csv",))], cores=1)
    assert len(lines) == 1 and lines[0].startswith("pre-flight: disk: this run needs up to 100 MB at peak")
