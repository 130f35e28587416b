"""Model files checked where they enter the pipeline: a GGUF we did not write (weights=local,
fidelity.real, the convert script's output) and a Hugging Face checkpoint (weights=local folder,
a download). A truncated or foreign file fails here, naming the file, what is wrong and what to
do, instead of later inside gguf-py ("cannot reshape array of size ...") or llama.cpp.

GGUF: the header is parsed here, not with gguf-py's GGUFReader, which maps every tensor and fails
on a short file with a numpy error; the tensor data it describes must lie inside the file, and
the architecture and tensor types must be ones the selected engine's tree knows.
Safetensors: the JSON header, each tensor's byte range against its dtype and shape and against
the file size, and the shards that model.safetensors.index.json names.
"""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

__all__ = ["ModelFileError", "GGUFHeader", "read_gguf_header", "check_gguf", "engine_knows",
           "check_safetensors", "check_checkpoint"]

RECOPY = ("the file was cut short (an interrupted copy or download): copy or download it again and "
          "compare its size and sha256 with the source")
NOT_GGUF = ("give a .gguf written by llama.cpp's convert_hf_to_gguf.py or llama-quantize; for a Hugging "
            "Face checkpoint point the path at its folder, and the pipeline converts it")


class ModelFileError(ValueError):
    """A model file that cannot be used: `path`, `problem` (what is wrong) and `todo` (what to do)."""

    def __init__(self, path: Path | str, problem: str, todo: str):
        super().__init__(f"{path}: {problem}. What to do: {todo}.")
        self.path, self.problem, self.todo = str(path), problem, todo


# ---- GGUF -------------------------------------------------------------------------------------
_SCALARS = {0: "B", 1: "b", 2: "H", 3: "h", 4: "I", 5: "i", 6: "f", 7: "?", 10: "Q", 11: "q", 12: "d"}
_STRING, _ARRAY = 8, 9
DEFAULT_ALIGNMENT = 32


@dataclass(frozen=True)
class GGUFTensor:
    name: str
    ne: tuple[int, ...]  # ggml order (innermost first)
    type_id: int
    offset: int  # from the start of the data section
    nbytes: int


@dataclass(frozen=True)
class GGUFHeader:
    path: str
    version: int
    file_bytes: int
    kv: dict[str, Any]  # the keys asked for (read_gguf_header's `keep`)
    tensors: list[GGUFTensor]
    alignment: int
    data_start: int

    @property
    def arch(self) -> str | None:
        return self.kv.get("general.architecture")

    @property
    def file_type(self) -> int | None:
        return self.kv.get("general.file_type")

    @property
    def data_end(self) -> int:
        """The file size the tensor data needs."""
        return max((self.data_start + t.offset + t.nbytes for t in self.tensors), default=self.data_start)


class _Short(Exception):
    """The header runs past the end of the file."""


class _Cursor:
    """Sequential reads of a header that knows where the file ends (buffered: a vocabulary is
    hundreds of thousands of small strings)."""

    def __init__(self, f, size: int):
        self.f, self.size, self.pos = f, size, 0
        self.buf, self.buf_start = b"", 0

    def read(self, n: int) -> bytes:
        end = self.pos + n
        if end > self.size:
            raise _Short(end)
        if end > self.buf_start + len(self.buf) or self.pos < self.buf_start:
            self.f.seek(self.pos)
            self.buf, self.buf_start = self.f.read(max(n, 1 << 20)), self.pos
        off = self.pos - self.buf_start
        self.pos = end
        return self.buf[off:off + n]

    def skip(self, n: int) -> None:
        if self.pos + n > self.size:
            raise _Short(self.pos + n)
        self.pos += n

    def unpack(self, fmt: str):
        return struct.unpack("<" + fmt, self.read(struct.calcsize("<" + fmt)))[0]

    def string(self, keep: bool = True) -> str | None:
        n = self.unpack("Q")
        if not keep:
            self.skip(n)
            return None
        return self.read(n).decode("utf-8", "replace")

    def value(self, vtype: int, keep: bool) -> Any:
        if vtype in _SCALARS:
            return self.unpack(_SCALARS[vtype])
        if vtype == _STRING:
            return self.string(keep)
        if vtype == _ARRAY:
            etype, n = self.unpack("I"), self.unpack("Q")
            if etype in _SCALARS:
                size = struct.calcsize("<" + _SCALARS[etype]) * n
                if not keep:
                    self.skip(size)
                    return None
                return list(struct.unpack(f"<{n}{_SCALARS[etype]}", self.read(size)))
            if n > self.size:  # every element takes a byte at least
                raise _Short(self.pos + n)
            items = [self.value(etype, keep) for _ in range(n)]
            return items if keep else None
        raise ValueError(f"unknown metadata value type {vtype}")


def _quant_sizes() -> dict[int, tuple[str, int, int]]:
    """ggml type id -> (name, block size, bytes per block), from the installed gguf-py."""
    from gguf.constants import GGML_QUANT_SIZES

    return {int(t): (t.name, bs, ts) for t, (bs, ts) in GGML_QUANT_SIZES.items()}


def read_gguf_header(path: Path | str, keep: Callable[[str], bool] | None = None) -> GGUFHeader:
    """Metadata (the keys `keep` accepts; default: all but the tokenizer's) and tensor infos.

    Raises ModelFileError for a missing file, one that is not a GGUF, or one cut short inside its
    header; the tensor data is not read (check_gguf compares it with the file size)."""
    path = Path(path)
    keep = keep or (lambda key: not key.startswith("tokenizer."))
    if not path.is_file():
        raise ModelFileError(path, "does not exist or is not a file", "check the path in the config")
    size = path.stat().st_size
    sizes = _quant_sizes()
    with open(path, "rb") as f:
        c = _Cursor(f, size)
        magic = f.read(4)
        if magic != b"GGUF":
            what = f"it starts with {magic!r}, a GGUF with b'GGUF'" if size >= 4 else f"it has {size} bytes"
            raise ModelFileError(path, f"not a GGUF file ({what})", NOT_GGUF)
        c.pos = 4
        try:
            version = c.unpack("I")
            if version not in (2, 3):
                raise ModelFileError(path, f"GGUF version {version}; llama.cpp reads versions 2 and 3",
                                     "convert the model again with the pinned engine's convert_hf_to_gguf.py")
            n_tensors, n_kv = c.unpack("Q"), c.unpack("Q")
            if n_tensors > size or n_kv > size:
                raise ModelFileError(path, f"corrupt header ({n_tensors} tensors, {n_kv} metadata keys in a "
                                     f"{size:,}-byte file)", RECOPY)
            kv: dict[str, Any] = {}
            for _ in range(n_kv):
                key = c.string()
                wanted = keep(key) or key == "general.alignment"
                value = c.value(c.unpack("I"), wanted)
                if wanted:
                    kv[key] = value
            tensors = []
            for _ in range(n_tensors):
                name = c.string()
                n_dims = c.unpack("I")
                if n_dims > 8:
                    raise ModelFileError(path, f"corrupt header (tensor {name!r} has {n_dims} dimensions)", RECOPY)
                ne = tuple(c.unpack("Q") for _ in range(n_dims))
                type_id, offset = c.unpack("I"), c.unpack("Q")
                if type_id not in sizes:
                    raise ModelFileError(path, f"tensor {name!r} has tensor type id {type_id}, which gguf-py "
                                         f"{_gguf_version()} does not know", "requantize the model from an "
                                         "F16 GGUF with the pinned engine's llama-quantize")
                _, block, block_bytes = sizes[type_id]
                if ne and ne[0] % block:
                    raise ModelFileError(path, f"corrupt header (tensor {name!r}: rows of {ne[0]} elements are "
                                         f"not whole {block}-element blocks)", RECOPY)
                tensors.append(GGUFTensor(name, ne, type_id, offset, math.prod(ne) // block * block_bytes))
        except ModelFileError:
            raise
        except _Short as e:
            raise ModelFileError(path, f"truncated inside its header: expected more than {e.args[0]:,} bytes, "
                                 f"found {size:,}", RECOPY) from None
        except (ValueError, struct.error) as e:  # an unknown value type: not what a GGUF writer writes
            raise ModelFileError(path, f"corrupt header ({e})", RECOPY) from None
    alignment = int(kv.get("general.alignment", DEFAULT_ALIGNMENT)) or DEFAULT_ALIGNMENT
    data_start = -(-c.pos // alignment) * alignment
    return GGUFHeader(str(path), version, size, kv, tensors, alignment, data_start)


def _gguf_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("gguf")
    except PackageNotFoundError:
        return "(installed)"


@dataclass(frozen=True)
class EngineTypes:
    label: str
    archs: frozenset[str]
    types: dict[int, str]  # ggml type id -> name


def engine_knows(engine_src: Path | str | None, label: str | None = None) -> EngineTypes | None:
    """Architectures (src/llama-arch.cpp, or src/llama.cpp in older trees) and ggml tensor types
    (ggml/include/ggml.h) of an engine's source tree; None where the tree does not say (no check
    is then better than a wrong one)."""
    if engine_src is None:
        return None
    src = Path(engine_src)
    arch_text = "".join(p.read_text(errors="replace") for p in (src / "src/llama-arch.cpp", src / "src/llama.cpp")
                        if p.is_file())
    archs = frozenset(re.findall(r'\{\s*LLM_ARCH_\w+\s*,\s*"([^"]+)"\s*\}', arch_text))
    header = src / "ggml/include/ggml.h"
    header_text = header.read_text(errors="replace") if header.is_file() else ""
    enum = re.search(r"enum ggml_type \{(.*?)\};", header_text, re.S)
    types = {int(v): n for n, v in re.findall(r"^\s*GGML_TYPE_(\w+)\s*=\s*(\d+)\s*,", enum.group(1), re.M)
             if n != "COUNT"} if enum else {}
    if not archs or not types:
        return None
    return EngineTypes(label or src.resolve().parent.name, archs, types)


def check_gguf(path: Path | str, engine_src: Path | str | None = None, engine_label: str | None = None) -> GGUFHeader:
    """A GGUF the pipeline did not write: a readable header, every tensor's data inside the file,
    and (with the engine's source tree) an architecture and tensor types that engine knows."""
    h = read_gguf_header(path)
    if h.arch is None:
        raise ModelFileError(path, "the GGUF has no general.architecture key", NOT_GGUF)
    for t in h.tensors:
        if t.offset % h.alignment:
            raise ModelFileError(path, f"corrupt header (tensor {t.name!r} at data offset {t.offset} is not aligned)",
                                 RECOPY)
    if h.data_end > h.file_bytes:
        past = [t for t in h.tensors if h.data_start + t.offset + t.nbytes > h.file_bytes]
        raise ModelFileError(path, f"truncated: expected {h.data_end:,} bytes, found {h.file_bytes:,} "
                             f"({len(past)} of {len(h.tensors)} tensors end past the end of the file, the first "
                             f"{past[0].name!r})", RECOPY)
    known = engine_knows(engine_src, engine_label)
    if known is not None:
        if h.arch not in known.archs:
            raise ModelFileError(path, f"architecture {h.arch!r} is not one engine {known.label} knows",
                                 "use a model of an architecture that engine supports, or select an engine "
                                 "that has it (`engine:` in the config)")
        names = _quant_sizes()
        unknown = sorted({names[t.type_id][0] for t in h.tensors if t.type_id not in known.types})
        if unknown:
            first = next(t.name for t in h.tensors if t.type_id not in known.types)
            raise ModelFileError(path, f"tensor type(s) {', '.join(unknown)} (tensor {first!r}) are not ones "
                                 f"engine {known.label} knows", "requantize the model from an F16 GGUF with that "
                                 "engine's llama-quantize, or select an engine that has these types")
    return h


# ---- safetensors ------------------------------------------------------------------------------
SAFETENSORS_DTYPE_BYTES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "U16": 2, "I16": 2, "F16": 2,
                           "BF16": 2, "U32": 4, "I32": 4, "F32": 4, "U64": 8, "I64": 8, "F64": 8}


def check_safetensors(path: Path | str) -> dict[str, dict[str, Any]]:
    """The tensors of a .safetensors file (name -> header entry) after checking that the header
    is JSON, each tensor's bytes match its dtype and shape, and the data lies inside the file."""
    path = Path(path)
    if not path.is_file():
        raise ModelFileError(path, "does not exist or is not a file", "download or copy the checkpoint again")
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ModelFileError(path, f"truncated: expected at least 8 bytes, found {size:,}", RECOPY)
        (n,) = struct.unpack("<Q", head)
        if 8 + n > size:
            raise ModelFileError(path, f"truncated inside its header (or not a safetensors file): expected more "
                                 f"than {8 + n:,} bytes, found {size:,}", RECOPY)
        try:
            header = json.loads(f.read(n))
        except (ValueError, UnicodeDecodeError):
            raise ModelFileError(path, "not a safetensors file (its header is not JSON)", RECOPY) from None
    if not isinstance(header, dict):
        raise ModelFileError(path, "not a safetensors file (its header is not a JSON object)", RECOPY)
    tensors = {k: v for k, v in header.items() if k != "__metadata__"}
    data_end = 0
    for name, t in tensors.items():
        try:
            begin, end = (int(x) for x in t["data_offsets"])
            want = math.prod(int(d) for d in t["shape"]) * SAFETENSORS_DTYPE_BYTES[t["dtype"]]
        except (KeyError, TypeError, ValueError):
            raise ModelFileError(path, f"corrupt header (tensor {name!r}: {t!r})", RECOPY) from None
        if end - begin != want:
            raise ModelFileError(path, f"corrupt header (tensor {name!r} spans {end - begin:,} bytes, its dtype and "
                                 f"shape need {want:,})", RECOPY)
        data_end = max(data_end, end)
    if 8 + n + data_end > size:
        raise ModelFileError(path, f"truncated: expected {8 + n + data_end:,} bytes, found {size:,}", RECOPY)
    return tensors


def check_checkpoint(folder: Path | str) -> None:
    """A Hugging Face checkpoint folder: config.json, and every safetensors shard (the index's, or
    every *.safetensors) whole and holding the tensors the index puts in it."""
    folder = Path(folder)
    if not (folder / "config.json").is_file():
        raise ModelFileError(folder, "no config.json (not a Hugging Face checkpoint folder)",
                             "point the path at the folder that holds config.json and the *.safetensors")
    index_path = folder / "model.safetensors.index.json"
    if index_path.is_file():
        try:
            weight_map = json.loads(index_path.read_text())["weight_map"]
        except (ValueError, KeyError, TypeError):
            raise ModelFileError(index_path, "not a safetensors index (no weight_map)", RECOPY) from None
        by_shard: dict[str, list[str]] = {}
        for tensor, shard in weight_map.items():
            by_shard.setdefault(shard, []).append(tensor)
        for shard, names in sorted(by_shard.items()):
            if not (folder / shard).is_file():
                raise ModelFileError(folder / shard, f"missing: {index_path.name} puts {len(names)} tensors in it",
                                     "download or copy the checkpoint again, every shard")
            missing = sorted(set(names) - set(check_safetensors(folder / shard)))
            if missing:
                raise ModelFileError(folder / shard, f"lacks {len(missing)} tensors that {index_path.name} puts "
                                     f"there (the first {missing[0]!r})", "download or copy the checkpoint again")
        return
    shards = sorted(folder.glob("*.safetensors"))
    if not shards and not list(folder.glob("*.bin")):
        raise ModelFileError(folder, "no weights (*.safetensors) in the checkpoint folder",
                             "download or copy the checkpoint again, with its weights")
    for shard in shards:
        check_safetensors(shard)
