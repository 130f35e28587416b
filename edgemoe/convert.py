"""Convert a Hugging Face checkpoint to GGUF with the pinned engine's own convert script.

The engine tree's ``convert_hf_to_gguf.py`` runs in a subprocess with ``PYTHONPATH`` pointing at
the tree's ``gguf-py`` (so it uses the gguf package it was written against, not whatever gguf is
installed). It writes to a temporary file beside the output, which is renamed into place only
when the script succeeded and the file is a GGUF; a failure leaves no output behind.

Conversion needs torch, safetensors, sentencepiece and transformers in the interpreter that runs
the script (the ``hf`` extra of this project); ``python`` selects that interpreter.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from edgemoe.files import sha256_file

__all__ = ["ConvertError", "convert_to_gguf", "OUTTYPES"]

# Output types the January-2025 convert script accepts for --outtype.
OUTTYPES = ("f32", "f16", "bf16", "q8_0", "tq1_0", "tq2_0", "auto")

_STDERR_TAIL_LINES = 40


class ConvertError(RuntimeError):
    """The convert script failed or could not be run; the message names the model folder."""


def _tail(text: str, n: int = _STDERR_TAIL_LINES) -> str:
    lines = text.rstrip().splitlines()
    if len(lines) > n:
        lines = [f"... ({len(lines) - n} earlier lines)"] + lines[-n:]
    return "\n".join("    " + ln for ln in lines)


def _config_workaround(hf_dir: Path) -> dict[str, Any] | None:
    """Keys to drop from config.json so that the pinned script does not trip over them, or None.

    At f7cd13301 ``OlmoeModel.set_gguf_parameters`` writes ``layer_norm_rms_epsilon`` = 1e-5 itself
    after the base class already wrote it from ``rms_norm_eps``, and gguf-py 0.13.0 raises
    "Duplicated key name" on the second write. When the config's value is the same 1e-5 the
    output is identical without the key, so it is dropped from a shadow copy of config.json.
    """
    try:
        cfg = json.loads((hf_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if "OlmoeForCausalLM" in (cfg.get("architectures") or []) and "rms_norm_eps" in cfg:
        if abs(float(cfg["rms_norm_eps"]) - 1e-5) <= 1e-12:
            cfg.pop("rms_norm_eps")
            return cfg
        raise ConvertError(
            f"cannot convert {hf_dir}: its config.json sets rms_norm_eps={cfg['rms_norm_eps']}, but the pinned "
            "convert script always writes 1e-5 for OLMoE; the GGUF would not match the model"
        )
    return None


def _shadow_dir(hf_dir: Path, config: dict[str, Any], parent: Path) -> Path:
    """A folder of the same name whose files link to ``hf_dir``'s, with a rewritten config.json."""
    shadow = parent / hf_dir.name
    shadow.mkdir()
    for p in hf_dir.iterdir():
        if p.name != "config.json":
            os.symlink(p.resolve(), shadow / p.name)
    (shadow / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    return shadow


def _gguf_tokenizer_kv(path: Path) -> dict[str, Any]:
    """``tokenizer.ggml.model`` and ``tokenizer.ggml.tokens`` of a GGUF (its header only)."""
    from edgemoe.modelcheck import read_gguf_header

    want = {"tokenizer.ggml.model", "tokenizer.ggml.tokens"}
    return {k: v for k, v in read_gguf_header(path, keep=want.__contains__).kv.items() if k in want}


def _check_vocab(hf_dir: Path, gguf_path: Path) -> int:
    """Check that a BPE GGUF puts every token of ``tokenizer.json`` at the id the file gives it.

    The January-2025 convert script reads the vocabulary through ``transformers.AutoTokenizer``;
    transformers 5 rebuilds some tokenizer classes from vocab + merges and may renumber special
    tokens it does not find in the BPE vocab. Such a GGUF would still run, with a wrong vocabulary:
    refuse it. Returns the number of tokens checked (0 where there is nothing to check).
    """
    tj_path = hf_dir / "tokenizer.json"
    if not tj_path.is_file():
        return 0
    kv = _gguf_tokenizer_kv(gguf_path)
    if kv.get("tokenizer.ggml.model") != "gpt2":
        return 0  # SentencePiece and others are read from their own files, not through tokenizer.json
    tokens = kv.get("tokenizer.ggml.tokens") or []
    tj = json.loads(tj_path.read_text(encoding="utf-8"))
    expected: dict[int, str] = {}
    vocab = (tj.get("model") or {}).get("vocab") or {}
    if isinstance(vocab, dict):
        expected.update({int(i): tok for tok, i in vocab.items()})
    for a in tj.get("added_tokens") or []:
        if a.get("special"):
            expected[int(a["id"])] = a["content"]
    bad = [(i, tok, tokens[i] if i < len(tokens) else None) for i, tok in sorted(expected.items())
           if i >= len(tokens) or tokens[i] != tok]
    if bad:
        shown = ", ".join(f"id {i}: tokenizer.json {t!r} vs GGUF {g!r}" for i, t, g in bad[:5])
        raise ConvertError(
            f"converting {hf_dir} produced a GGUF whose vocabulary does not match tokenizer.json "
            f"({len(bad)} of {len(expected)} tokens differ; {shown}). The transformers version in the "
            "converting interpreter reads this tokenizer differently from the one the convert script was "
            "written for; use the versions of the project's 'hf' extra"
        )
    return len(expected)


def convert_to_gguf(
    engine_src: Path,
    hf_dir: Path,
    out_path: Path,
    outtype: str = "f16",
    python: str = sys.executable,
    *,
    timeout: float | None = None,
    extra_args: list[str] | None = None,
) -> dict[str, Any]:
    """Run ``<engine_src>/convert_hf_to_gguf.py`` on ``hf_dir``, writing ``out_path`` atomically.

    Returns ``{"out_path", "outtype", "size", "sha256", "seconds", "command", "stderr_tail",
    "config_dropped_keys", "vocab_tokens_checked"}`` (``config_dropped_keys`` lists config.json keys hidden from the script, see
    :func:`_config_workaround`; normally empty).
    Raises :class:`ConvertError` (naming ``hf_dir`` and showing the tail of the script's stderr)
    if the script is missing, fails, times out, or writes no GGUF.
    """
    engine_src = Path(engine_src).resolve()
    hf_dir = Path(hf_dir).resolve()
    out_path = Path(out_path).resolve()
    script = engine_src / "convert_hf_to_gguf.py"
    gguf_py = engine_src / "gguf-py"

    if outtype not in OUTTYPES:
        raise ConvertError(f"cannot convert {hf_dir}: unknown outtype {outtype!r} (one of {', '.join(OUTTYPES)})")
    if not script.is_file():
        raise ConvertError(f"cannot convert {hf_dir}: the engine source {engine_src} has no convert_hf_to_gguf.py")
    if not (gguf_py / "gguf").is_dir():
        raise ConvertError(f"cannot convert {hf_dir}: the engine source {engine_src} has no gguf-py/gguf package")
    if not (hf_dir / "config.json").is_file():
        raise ConvertError(f"cannot convert {hf_dir}: no config.json there (not a Hugging Face checkpoint folder)")

    out_path.parent.mkdir(parents=True, exist_ok=True)
    patched = _config_workaround(hf_dir)
    shadow_parent: Path | None = None
    src_dir = hf_dir
    if patched is not None:
        shadow_parent = Path(tempfile.mkdtemp(prefix=".convert-src-", dir=out_path.parent))
        src_dir = _shadow_dir(hf_dir, patched, shadow_parent)
    tmp = out_path.with_name(f".{out_path.name}.tmp-{os.getpid()}-{time.monotonic_ns()}")
    cmd = [
        str(python),
        str(script),
        str(src_dir),
        "--outfile",
        str(tmp),
        "--outtype",
        outtype,
        *(extra_args or []),
    ]
    env = dict(os.environ)
    env["PYTHONPATH"] = str(gguf_py) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("PYTHONUNBUFFERED", "1")
    # Conversion is offline: never let transformers reach out to a hub.
    env.setdefault("HF_HUB_OFFLINE", "1")
    env.setdefault("TRANSFORMERS_OFFLINE", "1")
    env.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

    t0 = time.monotonic()
    try:
        try:
            proc = subprocess.run(
                cmd,
                env=env,
                cwd=str(engine_src),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                errors="replace",
                timeout=timeout,
            )
        except subprocess.TimeoutExpired as e:
            err = e.stderr if isinstance(e.stderr, str) else (e.stderr or b"").decode("utf-8", "replace")
            raise ConvertError(
                f"converting {hf_dir} to GGUF timed out after {timeout} s; last stderr lines:\n{_tail(err)}"
            ) from None
        except OSError as e:
            raise ConvertError(f"cannot convert {hf_dir}: could not run {python}: {e}") from None
        seconds = time.monotonic() - t0
        if proc.returncode != 0:
            raise ConvertError(
                f"converting {hf_dir} to GGUF failed (convert_hf_to_gguf.py exit code {proc.returncode}); "
                f"last stderr lines:\n{_tail(proc.stderr or proc.stdout)}"
            )
        if not tmp.is_file():
            raise ConvertError(
                f"converting {hf_dir} to GGUF wrote no output file; last stderr lines:\n{_tail(proc.stderr)}"
            )
        with open(tmp, "rb") as f:
            magic = f.read(4)
        if magic != b"GGUF":
            raise ConvertError(f"converting {hf_dir} wrote a file that is not GGUF (magic {magic!r})")
        try:
            vocab_checked = _check_vocab(hf_dir, tmp)
        except (ValueError, OSError, KeyError, TypeError) as e:
            raise ConvertError(f"converting {hf_dir}: could not check the GGUF's vocabulary: {e}") from None
        os.replace(tmp, out_path)
    finally:
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        if shadow_parent is not None:
            shutil.rmtree(shadow_parent, ignore_errors=True)
    return {
        "out_path": str(out_path),
        "outtype": outtype,
        "size": out_path.stat().st_size,
        "sha256": sha256_file(out_path),
        "seconds": round(seconds, 3),
        "command": cmd[:2] + [str(hf_dir), "--outfile", str(out_path)] + cmd[5:],
        "stderr_tail": _tail(proc.stderr, 10),
        "config_dropped_keys": ["rms_norm_eps"] if patched is not None else [],
        "vocab_tokens_checked": vocab_checked,
    }
