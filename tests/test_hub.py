"""Offline tests of edgemoe.hub (download) and edgemoe.convert against a local fake hub.

Fast, unmarked: the error cases (gated repo without / with a refused token, an invalid token,
unknown revision, unknown repo, truncated file, corrupt file, server down) and a plain download.
Each error case checks the HubError message (model id, repo, revision, what to do), that nothing
half-written is left, and that the token appears nowhere: not in the message, not in any file
under the test's folders.

The whole path through the workflow (serve -> download -> convert -> quantize -> llama-bench, all
four architectures) is tests/test_pipeline.py::test_real_weights_path_...
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from hub_server import HubServer  # noqa: E402

from edgemoe.hub import HubError, download_model  # noqa: E402

TOKEN = "hf_TestTokenDoNotLeak0123456789abcdef"  # granted access to the gated repos
OTHER_TOKEN = "hf_ValidButNotGranted9876543210zyxw"  # known to the hub, not granted
BAD_TOKEN = "hf_UnknownToTheHub5555555555555555555"  # rejected as invalid credentials

DEFAULT_ENGINE_SRC = "/tmp/dl/llama_cpp_python-0.3.6/vendor/llama.cpp"


def _engine_src() -> Path | None:
    p = Path(os.environ.get("EDGEMOE_ENGINE_SRC") or DEFAULT_ENGINE_SRC)
    return p if (p / "convert_hf_to_gguf.py").is_file() else None


def _bin_dir() -> Path | None:
    d = os.environ.get("EDGEMOE_LLAMA_BIN_DIR")
    if not d:
        return None
    p = Path(d)
    return p if (p / "llama-quantize").is_file() and (p / "llama-bench").is_file() else None


@pytest.fixture(autouse=True)
def hub_env(tmp_path, monkeypatch):
    """A clean HF environment: tmp HF_HOME, no token from the user's environment or token file."""
    home = tmp_path / "hf_home"
    home.mkdir()
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_XET", "1")
    monkeypatch.setenv("HF_HUB_DISABLE_IMPLICIT_TOKEN", "1")
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_TOKEN_PATH", str(home / "token"), raising=False)
    monkeypatch.setattr(hc, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"), raising=False)
    return home


SMALL_FILES = {
    "config.json": b'{"architectures": ["LlamaForCausalLM"], "model_type": "llama"}\n',
    "model.safetensors": bytes(range(256)) * 64,  # LFS (served through the fake CDN)
    "tokenizer.json": b'{"version": "1.0"}\n',
    "tokenizer_config.json": b"{}\n",
    "README.md": b"not needed for conversion\n",
    "original/consolidated.00.pth": b"not needed either",
}


@pytest.fixture
def hub():
    with HubServer() as server:
        server.add_token(TOKEN)
        server.add_token(OTHER_TOKEN)
        server.add_repo("acme/public-model", SMALL_FILES)
        server.add_repo("acme/gated-model", SMALL_FILES, gated=True, granted={TOKEN})
        yield server


@pytest.fixture
def endpoint(hub, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", hub.endpoint)
    return hub.endpoint


def _files_containing(root: Path, needle: str) -> list[str]:
    hits = []
    b = needle.encode()
    for p in root.rglob("*"):
        if p.is_file() and not p.is_symlink():
            try:
                if b in p.read_bytes():
                    hits.append(str(p))
            except OSError:
                pass
    return hits


def _assert_clean(dest: Path) -> None:
    assert not dest.exists(), f"{dest} should not exist after a failed download"
    leftovers = [p.name for p in dest.parent.iterdir() if p.name.startswith(f".{dest.name}.")]
    assert leftovers == [], f"half-written leftovers beside {dest}: {leftovers}"


def _assert_no_token_anywhere(tmp_path: Path, *extra: str) -> None:
    for tok in (TOKEN, OTHER_TOKEN, BAD_TOKEN, *extra):
        assert _files_containing(tmp_path, tok) == [], f"token {tok[:6]}... written to disk"


# ------------------------------------------------------------------------------------------
# plain download
# ------------------------------------------------------------------------------------------


def test_download_public_repo(endpoint, hub, tmp_path):
    dest = tmp_path / "models" / "pub"
    res = download_model("pub-model", "acme/public-model", "main", dest)
    assert res["commit"] == hub.repos["acme/public-model"].commit
    assert res["model_id"] == "pub-model" and res["repo_id"] == "acme/public-model"
    assert sorted(res["files"]) == ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    assert sorted(p.name for p in dest.iterdir()) == sorted(res["files"])  # no .cache, no README
    import hashlib

    for name, meta in res["files"].items():
        data = SMALL_FILES[name]
        assert meta["size"] == len(data)
        assert meta["sha256"] == hashlib.sha256(data).hexdigest()
        assert (dest / name).read_bytes() == data
    assert res["files"]["model.safetensors"]["lfs"] is True
    # pinned by commit sha as well
    res2 = download_model("pub-model", "acme/public-model", res["commit"], tmp_path / "models" / "pub2")
    assert res2["commit"] == res["commit"]
    assert [p.name for p in (tmp_path / "models").iterdir() if p.name.startswith(".")] == []


def test_download_gated_with_token_from_env(endpoint, hub, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    dest = tmp_path / "models" / "gated"
    res = download_model("gated-model", "acme/gated-model", "main", dest)
    assert (dest / "model.safetensors").read_bytes() == SMALL_FILES["model.safetensors"]
    assert TOKEN not in json.dumps(res)
    # the LFS blob came from the "CDN", which must not have seen the Authorization header
    cdn_hits = [r for r in hub.requests if "?filename=" in r[1]]
    assert cdn_hits and not any(had_auth for _, _, had_auth in cdn_hits)
    _assert_no_token_anywhere(tmp_path)


def test_failed_redownload_keeps_previous_copy(endpoint, hub, tmp_path):
    dest = tmp_path / "models" / "pub"
    download_model("pub-model", "acme/public-model", "main", dest)
    before = sorted(p.name for p in dest.iterdir())
    with pytest.raises(HubError):
        download_model("pub-model", "acme/public-model", "no-such-branch", dest)
    assert sorted(p.name for p in dest.iterdir()) == before
    assert [p.name for p in dest.parent.iterdir()] == ["pub"]


# ------------------------------------------------------------------------------------------
# error cases
# ------------------------------------------------------------------------------------------

ERROR_CASES = {
    # name: (repo, revision, token, server action, substrings the message must contain)
    "gated_no_token": ("acme/gated-model", "main", None, None,
                       ["gated", "no token", "set HF_TOKEN", "accept", "licence", "/acme/gated-model"]),
    "gated_refused_token": ("acme/gated-model", "main", OTHER_TOKEN, None,
                            ["gated", "refused the token", "accept the licence", "/acme/gated-model"]),
    "invalid_token": ("acme/gated-model", "main", BAD_TOKEN, None,
                      ["rejected the token as invalid", "set HF_TOKEN to a valid"]),
    "unknown_revision": ("acme/public-model", "v9.9.9", None, None,
                         ["revision does not exist", "check the pinned revision"]),
    "unknown_revision_sha": ("acme/public-model", "0123456789abcdef0123456789abcdef01234567", None, None,
                             ["revision does not exist", "check the pinned revision"]),
    "unknown_repo": ("acme/no-such-model", "main", None, None,
                     ["repo was not found", "check the repo id"]),
    "truncated_file": ("acme/public-model", "main", None, "truncate",
                       ["truncated", "retry the download"]),
    "corrupt_file": ("acme/public-model", "main", None, "corrupt",
                     ["corrupt", "sha256", "retry the download"]),
    "server_down": ("acme/public-model", "main", None, "stop",
                    ["could not be reached", "check the network", "HF_ENDPOINT"]),
}


@pytest.mark.parametrize("case", sorted(ERROR_CASES))
def test_error_cases(case, endpoint, hub, tmp_path, monkeypatch):
    repo, rev, token, action, expected = ERROR_CASES[case]
    if action == "truncate":
        hub.truncate(repo, "model.safetensors", 1000)
    elif action == "corrupt":
        hub.corrupt(repo, "model.safetensors")
    elif action == "stop":
        hub.stop()
    if token is not None:
        monkeypatch.setenv("HF_TOKEN", token)  # the token comes from the environment, as in the pipeline
    dest = tmp_path / "models" / f"m-{case}"
    with pytest.raises(HubError) as ei:
        download_model(f"model-{case}", repo, rev, dest)
    err = ei.value
    msg = str(err)
    print(f"\n[{case}] {msg}")
    assert f"'model-{case}'" in msg
    assert f"'{repo}'" in msg
    assert f"'{rev}'" in msg
    assert "What to do:" in msg
    for s in expected:
        assert s in msg, f"{s!r} missing from: {msg}"
    assert (err.model_id, err.repo_id, err.revision) == (f"model-{case}", repo, rev)
    for tok in (TOKEN, OTHER_TOKEN, BAD_TOKEN):
        assert tok not in msg
        assert tok not in repr(err.args)
    assert err.__cause__ is None and err.__suppress_context__
    _assert_clean(dest)
    _assert_no_token_anywhere(tmp_path)


def test_token_scrubbed_from_underlying_text(endpoint, hub, tmp_path, monkeypatch):
    """A token echoed back by a server (here: as the unknown revision name) is scrubbed."""
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    with pytest.raises(HubError) as ei:
        download_model("m", "acme/public-model", f"x{TOKEN}", tmp_path / "m")
    assert TOKEN not in str(ei.value)
    assert "***" in str(ei.value)


# ------------------------------------------------------------------------------------------
# convert_to_gguf error handling (a stand-in convert script: fast, no torch needed)
# ------------------------------------------------------------------------------------------


def _fake_engine(root: Path, body: str) -> Path:
    (root / "gguf-py" / "gguf").mkdir(parents=True)
    (root / "gguf-py" / "gguf" / "__init__.py").write_text("")
    (root / "convert_hf_to_gguf.py").write_text(body)
    return root


def test_convert_failure_names_model_dir_and_shows_stderr(tmp_path):
    from edgemoe.convert import ConvertError, convert_to_gguf

    engine = _fake_engine(tmp_path / "engine", (
        "import sys\n"
        "for i in range(100): print(f'INFO line {i}', file=sys.stderr)\n"
        "print('NotImplementedError: Architecture \"FooForCausalLM\" not supported!', file=sys.stderr)\n"
        "sys.exit(1)\n"))
    hf_dir = tmp_path / "hf" / "foo-model"
    hf_dir.mkdir(parents=True)
    (hf_dir / "config.json").write_text('{"architectures": ["FooForCausalLM"]}')
    out = tmp_path / "gguf" / "foo.gguf"
    with pytest.raises(ConvertError) as ei:
        convert_to_gguf(engine, hf_dir, out)
    msg = str(ei.value)
    print(msg)
    assert str(hf_dir) in msg
    assert "exit code 1" in msg
    assert 'Architecture "FooForCausalLM" not supported' in msg
    assert "INFO line 99" in msg and "INFO line 0\n" not in msg  # a tail, not everything
    assert list(out.parent.iterdir()) == []


def test_convert_writes_atomically_with_engine_gguf_py(tmp_path):
    from edgemoe.convert import convert_to_gguf

    engine = _fake_engine(tmp_path / "engine", (
        "import os, sys\n"
        "out = sys.argv[sys.argv.index('--outfile') + 1]\n"
        "assert sys.argv[sys.argv.index('--outtype') + 1] == 'f16'\n"
        "assert os.environ['PYTHONPATH'].split(os.pathsep)[0].endswith('gguf-py')\n"
        "open(out, 'wb').write(b'GGUF' + bytes(60))\n"))
    hf_dir = tmp_path / "hf" / "m"
    hf_dir.mkdir(parents=True)
    (hf_dir / "config.json").write_text('{"architectures": ["LlamaForCausalLM"]}')
    out = tmp_path / "gguf" / "m-f16.gguf"
    res = convert_to_gguf(engine, hf_dir, out)
    assert out.read_bytes().startswith(b"GGUF") and res["size"] == 64
    assert [p.name for p in out.parent.iterdir()] == ["m-f16.gguf"]


def test_convert_missing_config_is_clear(tmp_path):
    from edgemoe.convert import ConvertError, convert_to_gguf

    engine = _fake_engine(tmp_path / "engine", "raise SystemExit(0)\n")
    with pytest.raises(ConvertError, match="no config.json"):
        convert_to_gguf(engine, tmp_path / "empty", tmp_path / "x.gguf")
