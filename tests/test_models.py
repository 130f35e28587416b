"""quantize_all with a stand-in llama-quantize: outputs, sidecars, and the F16 gone before the copies."""
import json
import os
import stat
import sys

from edgemoe.models import quantize_all


def fake_quantize(tmp_path, log):
    exe = tmp_path / "llama-quantize"
    exe.write_text(f"""#!{sys.executable}
import os, shutil, sys
with open({str(log)!r}, "a") as f:
    f.write(f"{{sys.argv[3]}} f16_exists={{os.path.exists(sys.argv[1])}}\\n")
shutil.copy(sys.argv[1], sys.argv[2])
with open(sys.argv[2], "ab") as f:
    f.write(sys.argv[3].encode())
""")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return str(exe)


def test_quantize_all_makes_each_quant_with_provenance_and_drops_the_f16(tmp_path):
    f16 = tmp_path / "F16.tmp.gguf"
    f16.write_bytes(os.urandom(1000))
    exe = fake_quantize(tmp_path, tmp_path / "calls.log")
    quantize_all(f16, tmp_path, ["Q4_K_M", "Q8_0"], exe, 2, {"model": "m"})
    assert not f16.exists()
    for q in ("Q4_K_M", "Q8_0"):
        info = json.loads((tmp_path / f"{q}.json").read_text())
        assert info["model"] == "m" and info["gguf_bytes"] == (tmp_path / f"{q}.gguf").stat().st_size
        assert (tmp_path / f"{q}.gguf").read_bytes().endswith(q.encode())
    assert not list(tmp_path.glob(".*tmp*"))


def test_a_users_f16_is_never_deleted(tmp_path):
    f16 = tmp_path / "mine.gguf"
    f16.write_bytes(b"x" * 100)
    quantize_all(f16, tmp_path, ["F16", "Q8_0"], fake_quantize(tmp_path, tmp_path / "l"), 1, {},
                 f16_is_temporary=False)
    assert f16.exists() and (tmp_path / "F16.gguf").read_bytes() == b"x" * 100
