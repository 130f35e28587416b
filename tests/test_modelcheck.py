"""Model files checked where they enter (edgemoe.modelcheck): a real tiny twin GGUF whole, cut
short, foreign or unknown to the engine; safetensors checkpoints whole, cut short or missing a shard."""
import json
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFReader

from edgemoe.architectures import ArchSpec
from edgemoe.modelcheck import (ModelFileError, check_checkpoint, check_gguf, check_safetensors, engine_knows,
                                read_gguf_header)
from edgemoe.twins import write_twin
from hf_checkpoints import write_safetensors
from test_twins import SPEC, VOCAB


def fake_engine(root, archs=("llama", "olmoe"), types=(("F32", 0), ("F16", 1), ("Q4_K", 12))):
    """The two files of an engine tree engine_knows reads, listing what it is told."""
    (root / "src").mkdir(parents=True)
    (root / "ggml/include").mkdir(parents=True)
    (root / "src/llama-arch.cpp").write_text(
        "static const std::map<llm_arch, const char *> LLM_ARCH_NAMES = {\n"
        + "".join(f'    {{ LLM_ARCH_{a.upper()}, "{a}" }},\n' for a in archs) + "};\n")
    (root / "ggml/include/ggml.h").write_text(
        "    enum ggml_type {\n" + "".join(f"        GGML_TYPE_{n} = {v},\n" for n, v in types)
        + "        // GGML_TYPE_Q4_2 = 4, support has been removed\n        GGML_TYPE_COUNT = 39,\n    };\n")
    return root


@pytest.fixture(scope="module")
def twin(tmp_path_factory):
    path = tmp_path_factory.mktemp("twin") / "olmoe-tiny.gguf"
    write_twin(ArchSpec.from_config("t", SPEC), "t", 7, VOCAB, path, progress=False)
    return path


def cut(src, dst, n):
    dst.write_bytes(src.read_bytes()[:n])
    return dst


def test_a_whole_twin_passes_and_its_header_agrees_with_gguf_py(twin, tmp_path):
    h = check_gguf(twin, fake_engine(tmp_path / "engine"))
    assert h.arch == "olmoe" and h.file_type == 1 and h.data_end == twin.stat().st_size
    r = GGUFReader(twin)
    assert [(t.name, int(t.data_offset), int(t.n_bytes)) for t in r.tensors] == \
        [(t.name, h.data_start + t.offset, t.nbytes) for t in h.tensors]


def test_a_twin_cut_short_is_named_with_expected_and_found_sizes(twin, tmp_path):
    size = twin.stat().st_size
    short = cut(twin, tmp_path / "short.gguf", size * 6 // 10)
    with pytest.raises(ValueError, match="cannot reshape array"):  # what a user met before (issue 15)
        GGUFReader(short)
    with pytest.raises(ModelFileError) as ei:
        check_gguf(short)
    msg = str(ei.value)
    print(msg)
    assert msg.startswith(f"{short}: truncated: expected {size:,} bytes, found {size * 6 // 10:,} (")
    assert "What to do: the file was cut short" in msg


def test_a_header_cut_short_and_a_file_that_is_not_gguf(twin, tmp_path):
    with pytest.raises(ModelFileError, match=r"truncated inside its header: expected more than [\d,]+ bytes, "
                                             r"found 100"):
        check_gguf(cut(twin, tmp_path / "head.gguf", 100))
    (tmp_path / "model.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}" + bytes(100))
    with pytest.raises(ModelFileError, match="not a GGUF file .*point the path at its folder"):
        check_gguf(tmp_path / "model.safetensors")
    with pytest.raises(ModelFileError, match="does not exist"):
        check_gguf(tmp_path / "nothing.gguf")


def test_an_architecture_or_tensor_type_the_engine_does_not_know(twin, tmp_path):
    with pytest.raises(ModelFileError, match="architecture 'olmoe' is not one engine old knows"):
        check_gguf(twin, fake_engine(tmp_path / "old/source", archs=("llama",)))
    with pytest.raises(ModelFileError, match=r"tensor type\(s\) F16 \(tensor 'token_embd.weight'\) are not ones"):
        check_gguf(twin, fake_engine(tmp_path / "f32only/source", types=(("F32", 0),)))
    assert engine_knows(tmp_path / "absent") is None  # no tree, no claims


def test_the_pinned_engines_tree_is_read_where_it_is_here():
    src = Path("results/engine/llama.cpp-f7cd13301/source")
    if not src.is_dir():
        pytest.skip("the engine source has not been fetched here")
    known = engine_knows(src)
    assert {"llama", "olmoe", "qwen2", "gemma2"} <= known.archs and known.types[12] == "Q4_K"
    assert 4 not in known.types  # commented out: support removed


def test_a_local_gguf_cut_short_fails_where_it_enters_before_quantizing(twin, tmp_path):
    from edgemoe.models import make_local_gguf

    short = cut(twin, tmp_path / "mine.gguf", twin.stat().st_size - 1000)
    with pytest.raises(ModelFileError, match=f"{short}: truncated"):
        make_local_gguf("t", SPEC, short, ["Q4_K_M"], tmp_path / "out", "/nonexistent/llama-quantize", 1)
    assert not (tmp_path / "out").exists()


def test_the_preflight_checks_a_local_gguf_before_any_job(twin, tmp_path, default_config):
    import copy

    from edgemoe.config import Experiment
    from edgemoe.preflight import run_preflight

    short = cut(twin, tmp_path / "mine.gguf", 5000)
    cfg = copy.deepcopy(default_config)
    cfg["weights"] = "local"
    cfg["experiment"]["models"] = ["llama-3.2-1b"]
    cfg["models"]["llama-3.2-1b"]["local"] = str(short)
    with pytest.raises(ModelFileError, match="truncated inside its header"):
        run_preflight(Experiment(cfg), [], cores=1)


def test_the_convert_scripts_vocab_is_read_from_the_same_header_parser(twin):
    from edgemoe.convert import _gguf_tokenizer_kv

    kv = _gguf_tokenizer_kv(twin)
    assert kv["tokenizer.ggml.model"] == "gpt2" and len(kv["tokenizer.ggml.tokens"]) == 1000
    assert "general.alignment" not in kv
    assert read_gguf_header(twin).kv.keys() >= {"general.architecture", "olmoe.expert_count"}


# ---- safetensors ------------------------------------------------------------------------------
def checkpoint(folder, shards=2):
    """A sharded checkpoint: config.json, shards and an index, the way the hub serves one."""
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    rng = np.random.default_rng(0)
    weight_map = {}
    for k in range(shards):
        name = f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
        tensors = {f"layers.{k}.w{i}": rng.standard_normal((64, 32)).astype(np.float32) for i in range(3)}
        write_safetensors(folder / name, tensors)
        weight_map.update({t: name for t in tensors})
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return folder


def test_a_whole_checkpoint_passes(tmp_path):
    check_checkpoint(checkpoint(tmp_path / "ckpt"))
    single = tmp_path / "single"
    single.mkdir()
    (single / "config.json").write_text("{}")
    write_safetensors(single / "model.safetensors", {"w": np.ones((8, 8), np.float32)})
    check_checkpoint(single)


def test_a_shard_cut_short_is_named_with_expected_and_found_sizes(tmp_path):
    ckpt = checkpoint(tmp_path / "ckpt")
    shard = ckpt / "model-00002-of-00002.safetensors"
    size = shard.stat().st_size
    cut(shard, shard, size - 10)
    with pytest.raises(ModelFileError) as ei:
        check_checkpoint(ckpt)
    assert str(ei.value).startswith(f"{shard}: truncated: expected {size:,} bytes, found {size - 10:,}. What to do:")


def test_a_shard_missing_or_lacking_what_the_index_puts_there(tmp_path):
    ckpt = checkpoint(tmp_path / "ckpt")
    (ckpt / "model-00001-of-00002.safetensors").unlink()
    with pytest.raises(ModelFileError, match="model-00001-of-00002.safetensors: missing: model.safetensors.index.json "
                                             "puts 3 tensors in it"):
        check_checkpoint(ckpt)
    ckpt = checkpoint(tmp_path / "ckpt2")
    index = json.loads((ckpt / "model.safetensors.index.json").read_text())
    index["weight_map"]["layers.0.extra"] = "model-00002-of-00002.safetensors"
    (ckpt / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ModelFileError, match="lacks 1 tensors that model.safetensors.index.json puts there "
                                             "\\(the first 'layers.0.extra'\\)"):
        check_checkpoint(ckpt)


def test_a_safetensors_header_that_is_not_json_or_does_not_add_up(tmp_path):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes((8).to_bytes(8, "little") + b"not json" + bytes(16))
    with pytest.raises(ModelFileError, match="not a safetensors file"):
        check_safetensors(bad)
    header = json.dumps({"w": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 32]}}).encode()
    bad.write_bytes(len(header).to_bytes(8, "little") + header + bytes(64))
    with pytest.raises(ModelFileError, match="spans 32 bytes, its dtype and shape need 64"):
        check_safetensors(bad)

