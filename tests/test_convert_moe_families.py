"""The engine's own converter on tiny HF checkpoints of the MoE families: what it writes is what
ArchSpec describes (tensor names, shapes, types, architecture metadata), so twins and converted
real checkpoints agree. Needs the llama.cpp tree (EDGEMOE_ENGINE_SRC or results/engine/...) and
the hf extra (torch)."""
import importlib.util
import json

import pytest
from gguf import GGUFReader
from hf_checkpoints_moe import ARCHS, build_checkpoint
from test_architectures_moe import _engine_tree

from edgemoe.architectures import ArchSpec, spec_from_hf_config

pytestmark = pytest.mark.skipif(_engine_tree() is None or importlib.util.find_spec("torch") is None,
                                reason="needs the llama.cpp f7cd13301 tree and torch")


@pytest.mark.parametrize("arch", ARCHS)
def test_converted_checkpoint_is_what_the_spec_describes(tmp_path, arch):
    from edgemoe.convert import convert_to_gguf

    src = _engine_tree()
    info = build_checkpoint(arch, tmp_path / arch, src, seed=3, cache_dir=tmp_path / "cache")
    convert_to_gguf(src, tmp_path / arch, tmp_path / f"{arch}.gguf", timeout=600)
    spec = ArchSpec.from_config(arch, spec_from_hf_config(json.loads((tmp_path / arch / "config.json").read_text())))
    r = GGUFReader(tmp_path / f"{arch}.gguf")
    got = {t.name: (tuple(int(x) for x in reversed(t.shape)), t.tensor_type.name) for t in r.tensors}
    want = {t.name: (t.shape, t.dtype) for t in spec.tensors()}  # qwen2moe's ffn_gate_inp_shexp too: (1, n_embd) F16
    assert got == want
    assert spec.total_params() == info["n_params"]
    md = spec.gguf_metadata(arch)
    for key, value in md.items():
        if key == "general.name":
            continue
        field = r.fields[key].contents()
        assert field == pytest.approx(value) if isinstance(value, float) else field == value, key
    assert r.fields["tokenizer.ggml.pre"].contents() == spec.pre_tokenizer_name
