"""Node-local copies of model files for cluster jobs (profiles/slurm): with EDGEMOE_MODEL_SCRATCH set
(a node-local folder, e.g. $SLURM_TMPDIR or /local/scratch), a cell maps a copy of its model file
there instead of the file on the shared file system, whose page cache and network reads would
otherwise be part of what the cell times. Unset (the default): the file itself.

The copy goes through edgemoe.files.canonical_copy (the one way model files reach a place: large
sequential writes, so the page cache holds the same folio sizes as for the original), is named after
the file's path, size and mtime, and is checked by size; a copy already there is reused.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
from pathlib import Path

from edgemoe.files import canonical_copy

ENV = "EDGEMOE_MODEL_SCRATCH"


class ScratchError(RuntimeError):
    pass


def staged_path(src: Path, scratch: Path) -> Path:
    st = src.stat()
    tag = hashlib.sha256(f"{src.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
    return scratch / tag / src.name


def stage(path: str | Path, scratch: str | Path | None = None) -> str:
    """The path a cell should map: `path` itself, or its node-local copy under $EDGEMOE_MODEL_SCRATCH."""
    scratch = scratch if scratch is not None else os.path.expandvars(os.environ.get(ENV, ""))
    if not scratch or "$" in str(scratch):  # unset, or a variable this host does not have
        return str(path)
    src, scratch = Path(path), Path(scratch)
    dst = staged_path(src, scratch)
    size = src.stat().st_size
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(scratch / ".stage.lock", "w") as lock:  # one copy at a time per node folder
        fcntl.flock(lock, fcntl.LOCK_EX)
        if dst.is_file() and dst.stat().st_size == size:
            return str(dst)
        free = shutil.disk_usage(scratch).free
        if free < size:
            raise ScratchError(f"{ENV}={scratch}: {size / 1e9:.2f} GB needed for {src.name}, {free / 1e9:.2f} GB "
                               "free; point it at a larger node-local folder or unset it")
        canonical_copy(src, dst)
    if dst.stat().st_size != size:
        raise ScratchError(f"{ENV}: the copy {dst} of {src} is {dst.stat().st_size} bytes, not {size}")
    return str(dst)
