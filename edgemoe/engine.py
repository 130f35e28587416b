"""The llama.cpp engine: fetch the pinned source, check it, patch it, build only what we use.

Provenance is ours, not llama.cpp's: a vendored tree ships a pre-generated build-info.cpp (the
packager's commit and compiler), and a tree that regenerates it runs `git rev-parse` wherever it
sits, inside our repo that would stamp our HEAD. So the commit comes from the sdist's CHANGELOG or
from git, and the build records its own flags and compiler versions.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from edgemoe.cuda import build_facts
from edgemoe.files import atomic_write_json, sha256_file


class EngineError(RuntimeError):
    pass


# Always set; device profiles add their backend flags on top.
BASE_CMAKE_FLAGS = [
    "-DCMAKE_BUILD_TYPE=Release",
    "-DLLAMA_CURL=OFF",
    "-DBUILD_SHARED_LIBS=OFF",  # self-contained binaries: no RPATH into the build folder
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_SERVER=OFF",
    "-DGGML_CCACHE=ON",  # used when ccache is installed; a rebuild then takes seconds
]


def _run(cmd: list[str], cwd: Path | None = None, env: dict | None = None, what: str = "") -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stdout + proc.stderr)[-3000:]
        raise EngineError(f"{what or cmd[0]} failed (exit {proc.returncode}): {' '.join(cmd)}\n{tail}")
    return proc.stdout


# ---- source -------------------------------------------------------------------------------------
def download_sdist(package: str, version: str, sha256: str, cache_dir: Path) -> Path:
    """The sdist from PyPI (through pip, so pip's index settings apply), checked against sha256."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    norm = package.replace("-", "_")
    found = sorted(cache_dir.glob(f"{norm}-{version}.tar.gz")) + sorted(cache_dir.glob(f"{package}-{version}.tar.gz"))
    if not found:
        with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
            _run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                  f"{package}=={version}", "-d", tmp], what=f"pip download {package}=={version}")
            got = list(Path(tmp).glob("*.tar.gz"))
            if len(got) != 1:
                raise EngineError(f"pip download {package}=={version} gave {got}, expected one .tar.gz")
            dest = cache_dir / got[0].name
            os.replace(got[0], dest)
            found = [dest]
    path = found[0]
    actual = sha256_file(path)
    if actual != sha256:
        raise EngineError(f"engine source {path.name}: sha256 {actual} does not match the configured "
                          f"{sha256} (engines.*.source.sha256). Delete the file if it is corrupt, or fix the config.")
    return path


def changelog_commit(changelog: str, version: str) -> str:
    """The llama.cpp commit that llama-cpp-python's CHANGELOG names for a version."""
    m = re.search(rf"^## \[{re.escape(version)}\]\s*$(.*?)(?=^## \[|\Z)", changelog, re.M | re.S)
    if not m:
        raise EngineError(f"CHANGELOG has no section for version {version}")
    # Newer CHANGELOGs name abbreviated commits (llama.cpp@0c1e57098): recorded as named.
    c = re.search(r"llama\.cpp@([0-9a-f]{7,40})\b", m.group(1))
    if not c:
        raise EngineError(f"CHANGELOG section {version} names no llama.cpp commit")
    return c.group(1)


def _extract_sdist(tarball: Path, subdir: str, dest: Path) -> str:
    """Unpack `subdir` of the sdist into dest; return the commit its CHANGELOG names."""
    with tarfile.open(tarball) as tf:
        top = tf.getnames()[0].split("/")[0]
        prefix = f"{top}/{subdir.strip('/')}/"
        members = [m for m in tf.getmembers() if m.name.startswith(prefix)]
        if not members:
            raise EngineError(f"{tarball.name} has no folder {subdir!r} (engines.*.source.subdir)")
        for m in members:
            m.name = m.name[len(prefix):]
        tf.extractall(dest, members=[m for m in members if m.name], filter="data")
        changelog = tf.extractfile(f"{top}/CHANGELOG.md").read().decode()
    version = tarball.name[: -len(".tar.gz")].rsplit("-", 1)[1]
    return changelog_commit(changelog, version)


def apply_patches(src: Path, patches: list[Path], engine_id: str) -> list[dict[str, str]]:
    applied = []
    for p in patches:
        if not p.is_file():
            raise EngineError(f"patch {p} (engines.{engine_id}.patches) not found")
        proc = subprocess.run(["patch", "-p1", "--forward", "--batch", "--fuzz=0", "-i", str(p.resolve())],
                              cwd=src, capture_output=True, text=True)
        if proc.returncode != 0:
            raise EngineError(f"patch {p.name} does not apply to engine {engine_id} ({src}); it was made for "
                              f"another llama.cpp commit. patch said:\n{(proc.stdout + proc.stderr)[-2000:]}")
        applied.append({"name": p.name, "sha256": sha256_file(p)})
    return applied


def prepare_source(engine_id: str, engine: dict[str, Any], patch_dir: Path, dest: Path,
                   download_cache: Path) -> dict[str, Any]:
    """Fetch, check and patch the source into `dest` (atomically); return its provenance."""
    src_cfg = engine["source"]
    dest = Path(dest)
    tmp = Path(tempfile.mkdtemp(prefix=dest.name + ".tmp-", dir=dest.parent))
    try:
        if src_cfg["kind"] == "pypi-sdist":
            tarball = download_sdist(src_cfg["package"], src_cfg["version"], src_cfg["sha256"], download_cache)
            commit = _extract_sdist(tarball, src_cfg["subdir"], tmp)
            origin = {"kind": "pypi-sdist", "package": src_cfg["package"], "version": src_cfg["version"],
                      "file": tarball.name, "sha256": src_cfg["sha256"]}
        else:
            tmp.rmdir()
            _run(["git", "clone", "--quiet", src_cfg["url"], str(tmp)], what="git clone")
            _run(["git", "checkout", "--quiet", src_cfg["ref"]], cwd=tmp, what=f"git checkout {src_cfg['ref']}")
            commit = _run(["git", "rev-parse", "HEAD"], cwd=tmp).strip()
            origin = {"kind": "git", "url": src_cfg["url"], "ref": src_cfg["ref"], "sha256": None}
        want = engine.get("commit")
        if want and not commit.startswith(want) and not want.startswith(commit):
            raise EngineError(f"engines.{engine_id}.commit is {want}, but the source is commit {commit}")
        patches = apply_patches(tmp, [patch_dir / p for p in engine.get("patches", [])], engine_id)
        if dest.exists():
            shutil.rmtree(dest)
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {"engine": engine_id, "commit": commit, "source": origin, "patches": patches,
            "patches_sha256": _combined([p["sha256"] for p in patches])}


def _combined(hashes: list[str]) -> str:
    return hashlib.sha256("".join(hashes).encode()).hexdigest() if hashes else ""


# ---- build --------------------------------------------------------------------------------------
def _tool_version(exe: str) -> str:
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=30).stdout
        return out.splitlines()[0].strip() if out else "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def build(src: Path, build_dir: Path, flags: list[str], targets: list[str], jobs: int,
          source_info: dict[str, Any], log: Path | None = None) -> dict[str, Any]:
    """Configure and build `targets`; return the build's provenance (written by the caller)."""
    src, build_dir = Path(src).resolve(), Path(build_dir).resolve()
    env = dict(os.environ)
    # Keep llama.cpp's build-info generator from finding our repo's .git above the tree.
    env["GIT_CEILING_DIRECTORIES"] = str(src.parent)
    # ccache hits across clones and work folders: paths under the work folder are hashed relative.
    env.setdefault("CCACHE_BASEDIR", os.getcwd())
    all_flags = BASE_CMAKE_FLAGS + list(flags)
    _drop_foreign_cache(build_dir, src)
    t0 = time.monotonic()
    out = _run(["cmake", "-S", str(src), "-B", str(build_dir), *all_flags], env=env, what="cmake configure")
    out += _run(["cmake", "--build", str(build_dir), "-j", str(jobs), "--target", *targets], env=env,
                what="cmake build")
    seconds = time.monotonic() - t0
    if log:
        log.write_text(out)
    cache = _cmake_cache(build_dir / "CMakeCache.txt")
    binaries = {}
    for t in targets:
        exe = build_dir / "bin" / t
        if not exe.is_file():
            raise EngineError(f"build of {t} produced no {exe}")
        binaries[t] = {"path": f"bin/{t}", "sha256": sha256_file(exe)}  # relative to the build folder
    return {
        **source_info,
        "cmake_flags": all_flags,
        "targets": targets,
        "c_compiler": _tool_version(cache.get("CMAKE_C_COMPILER", "cc")),
        "cxx_compiler": _tool_version(cache.get("CMAKE_CXX_COMPILER", "c++")),
        "cmake": _tool_version("cmake"),
        "ccache": shutil.which("ccache") is not None,
        "build_seconds": round(seconds, 1),
        "binaries": binaries,
        **build_facts(src, cache),  # CUDA graphs: built with them, and off for MoE graphs (edgemoe/cuda.py)
    }


def _drop_foreign_cache(build_dir: Path, src: Path) -> None:
    """A build folder copied or moved from another work folder keeps a CMakeCache that names the old
    source, and cmake refuses it: start that build afresh (ccache keeps it quick)."""
    cache = build_dir / "CMakeCache.txt"
    if cache.is_file():
        home = _cmake_cache(cache).get("CMAKE_HOME_DIRECTORY")
        if home and Path(home).resolve() != src:
            shutil.rmtree(build_dir)


def _cmake_cache(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        m = re.match(r"^([A-Za-z_]+):[A-Z]+=(.*)$", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out


def write_build_info(info: dict[str, Any], path: Path) -> None:
    atomic_write_json(path, info)


def binary(build_info_path: Path | str, target: str) -> str:
    """Path of a built program, from the build-info.json beside it."""
    import json

    info = json.loads(Path(build_info_path).read_text())
    if target not in info["binaries"]:
        raise EngineError(f"{build_info_path}: {target} was not built (engines.*.targets)")
    return str(Path(build_info_path).parent / info["binaries"][target]["path"])
