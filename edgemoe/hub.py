"""Download a model checkpoint from the Hugging Face hub at a pinned revision.

``download_model`` fetches only the files conversion needs, checks every file against the size
and hash the hub announced (sha256 for LFS files, the git blob sha1 for the others), and moves
the folder into place only when everything is there and correct. Every failure is one exception
class, :class:`HubError`, whose message names the model id, the repo and the revision and says
what to do. The token never appears in a message: it is scrubbed from any text taken from an
underlying exception.

The endpoint is ``HF_ENDPOINT`` at call time (default https://huggingface.co), so a test can
point it at a local server without re-importing huggingface_hub.
"""

from __future__ import annotations

import fnmatch
import hashlib
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

from edgemoe.files import sha256_file

__all__ = ["HubError", "download_model", "DEFAULT_ALLOW_PATTERNS", "DEFAULT_ENDPOINT"]

DEFAULT_ENDPOINT = "https://huggingface.co"

# What llama.cpp's convert_hf_to_gguf.py reads: config, weights (+ shard index), tokenizer files.
DEFAULT_ALLOW_PATTERNS: tuple[str, ...] = (
    "config.json",
    "generation_config.json",
    "*.safetensors",
    "model.safetensors.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "tokenizer.model",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
)

_HF_TOKEN_RE = re.compile(r"hf_[A-Za-z0-9]{8,}")
_BEARER_RE = re.compile(r"(?i)(bearer\s+)[^\s'\",]+")


class HubError(RuntimeError):
    """A model could not be downloaded; the message says which, why, and what to do."""

    def __init__(self, message: str, *, model_id: str, repo_id: str, revision: str, reason: str):
        super().__init__(message)
        self.model_id = model_id
        self.repo_id = repo_id
        self.revision = revision
        self.reason = reason


def _scrub(text: str, token: str | None) -> str:
    if token:
        text = text.replace(token, "***")
    text = _BEARER_RE.sub(r"\1***", text)
    return _HF_TOKEN_RE.sub("hf_***", text)


def _endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def _git_blob_sha1(path: Path, size: int) -> str:
    h = hashlib.sha1()
    h.update(f"blob {size}\0".encode())
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _wanted(path: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatch(path, p) for p in patterns)


class _Failure(Exception):
    """Internal: a classified failure (reason, advice, detail) turned into HubError at the top."""

    def __init__(self, reason: str, advice: str, detail: str = ""):
        super().__init__(reason)
        self.reason, self.advice, self.detail = reason, advice, detail


def _classify(exc: BaseException, *, repo_id: str, token: str | None, endpoint: str) -> _Failure:
    """Map a huggingface_hub / httpx exception onto (reason, advice)."""
    from huggingface_hub import errors as hf_errors

    repo_url = f"{endpoint}/{repo_id}"
    detail = f"{type(exc).__name__}: {exc}"
    status = None
    response = getattr(exc, "response", None)
    if response is not None:
        status = getattr(response, "status_code", None)
    server_msg = ""
    if response is not None:
        try:
            server_msg = response.headers.get("X-Error-Message") or ""
        except Exception:  # pragma: no cover - defensive
            server_msg = ""

    if isinstance(exc, hf_errors.GatedRepoError):
        if token:
            return _Failure(
                "the repo is gated and the hub refused the token given (HTTP %s)" % status,
                f"accept the licence at {repo_url} with the account that owns the token, "
                "or set HF_TOKEN to a token of an account that has been granted access",
                detail,
            )
        return _Failure(
            "the repo is gated and no token was given",
            f"set HF_TOKEN to a read token (https://huggingface.co/settings/tokens) of an account "
            f"that has accepted the licence at {repo_url}",
            detail,
        )
    if isinstance(exc, hf_errors.RevisionNotFoundError):
        return _Failure(
            "the revision does not exist in the repo",
            f"check the pinned revision in the model config: use a commit sha, branch or tag listed at "
            f"{repo_url}/commits/main",
            detail,
        )
    if isinstance(exc, hf_errors.RepositoryNotFoundError):
        return _Failure(
            "the repo was not found (it does not exist, or it is private and the token has no access)",
            f"check the repo id in the model config against {repo_url}; for a private repo set HF_TOKEN "
            "to a token with read access",
            detail,
        )
    if isinstance(exc, hf_errors.HfHubHTTPError) and status == 401:
        if token:
            return _Failure(
                "the hub rejected the token as invalid (HTTP 401%s)" % (f": {server_msg}" if server_msg else ""),
                "set HF_TOKEN to a valid read token from https://huggingface.co/settings/tokens "
                "(or unset it for public repos)",
                detail,
            )
        return _Failure(
            "the hub requires authentication (HTTP 401)",
            f"set HF_TOKEN to a read token of an account with access to {repo_url}",
            detail,
        )
    if isinstance(exc, hf_errors.HfHubHTTPError) and status == 403:
        return _Failure(
            "the hub refused access (HTTP 403)",
            f"make sure the token's account has access to {repo_url} (accept its licence) and that the "
            "token has read permission",
            detail,
        )
    if isinstance(exc, hf_errors.RemoteEntryNotFoundError):
        return _Failure(
            "a file listed by the hub could not be fetched (entry not found)",
            "retry; if it persists, the revision may be broken: pin another one",
            detail,
        )

    # Network failures: httpx errors directly, or wrapped by huggingface_hub in LocalEntryNotFoundError
    chain: list[BaseException] = []
    e: BaseException | None = exc
    while e is not None and len(chain) < 10:
        chain.append(e)
        e = e.__cause__ or e.__context__
    names = {type(c).__name__ for c in chain}
    network = {"ConnectError", "ConnectTimeout", "ReadTimeout", "TimeoutException", "NetworkError",
               "RemoteProtocolError", "ReadError", "WriteError", "PoolTimeout", "ProxyError"}
    if names & network or isinstance(exc, (hf_errors.LocalEntryNotFoundError, ConnectionError)):
        return _Failure(
            f"the hub at {endpoint} could not be reached or broke off the transfer",
            "check the network connection, proxy settings and HF_ENDPOINT, then retry",
            detail,
        )
    if isinstance(exc, hf_errors.HfHubHTTPError) and status is not None and status >= 500:
        return _Failure(
            f"the hub answered with a server error (HTTP {status})",
            "the hub may be down: retry later (status: https://status.huggingface.co)",
            detail,
        )
    if isinstance(exc, OSError) and "Consistency check failed" in str(exc):
        return _Failure(
            "a downloaded file is truncated (its size differs from the size the hub announced)",
            "retry the download; if it persists, check the network or proxy for cut-off transfers",
            detail,
        )
    if isinstance(exc, hf_errors.HfHubHTTPError):
        return _Failure(
            f"the hub answered with an error (HTTP {status})",
            "retry; if it persists, check the repo and revision in the model config",
            detail,
        )
    return _Failure(
        "the download failed unexpectedly",
        "retry; if it persists, report the detail below",
        detail,
    )


def download_model(
    model_id: str,
    repo_id: str,
    revision: str,
    dest_dir: str | os.PathLike,
    allow_patterns: list[str] | tuple[str, ...] | None = None,
    token: str | None = None,
) -> dict[str, Any]:
    """Download ``repo_id`` at ``revision`` into ``dest_dir`` (replaced atomically on success).

    ``token``: None reads ``HF_TOKEN`` from the environment (then huggingface_hub's stored token).
    ``allow_patterns``: fnmatch patterns of repo paths to fetch; default
    :data:`DEFAULT_ALLOW_PATTERNS` (what conversion needs).

    Returns ``{"model_id", "repo_id", "revision", "commit", "endpoint", "files"}`` where
    ``commit`` is the resolved 40-hex commit sha and ``files`` maps each repo path to
    ``{"size", "sha256", "lfs"}``.

    Raises :class:`HubError` for every failure; ``dest_dir`` is then left as it was, and nothing
    half-written remains beside it.
    """
    dest = Path(dest_dir).expanduser().absolute()
    endpoint = _endpoint()
    if token is None:
        token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN") or None
        if token is None:
            try:
                from huggingface_hub import get_token

                token = get_token()
            except Exception:
                token = None
    patterns = list(allow_patterns) if allow_patterns is not None else list(DEFAULT_ALLOW_PATTERNS)

    def fail(f: _Failure) -> HubError:
        detail = _scrub(f.detail, token).strip()
        if len(detail) > 1500:
            detail = detail[:1500] + " ..."
        msg = (
            f"Cannot download model '{model_id}' from Hugging Face repo '{repo_id}' at revision "
            f"'{revision}': {f.reason}. What to do: {f.advice}."
        )
        if detail:
            msg += f" (detail: {detail})"
        return HubError(_scrub(msg, token), model_id=model_id, repo_id=repo_id, revision=revision, reason=f.reason)

    dest.parent.mkdir(parents=True, exist_ok=True)
    work = dest.parent / f".{dest.name}.download-{uuid.uuid4().hex[:12]}"
    staging = work / "files"
    try:
        try:
            from huggingface_hub import HfApi, snapshot_download
            from huggingface_hub.hf_api import RepoFile
        except ImportError as e:  # pragma: no cover - environment problem
            raise _Failure(
                "huggingface_hub is not installed",
                "install the project's 'pipeline' extra (pip install -e '.[pipeline]')",
                str(e),
            ) from None

        staging.mkdir(parents=True)
        api = HfApi(endpoint=endpoint, token=token if token else False)
        try:
            info = api.model_info(repo_id, revision=revision, token=token if token else False)
            commit = info.sha
            if not commit or not re.fullmatch(r"[0-9a-f]{40}", commit):
                raise _Failure("the hub did not return a commit sha for the revision",
                               "check HF_ENDPOINT points at a Hugging Face hub", f"sha={commit!r}")
            tree = [
                f for f in api.list_repo_tree(repo_id, revision=commit, recursive=True,
                                              token=token if token else False)
                if isinstance(f, RepoFile)
            ]
        except _Failure:
            raise
        except Exception as e:
            raise _classify(e, repo_id=repo_id, token=token, endpoint=endpoint) from None

        wanted = {f.path: f for f in tree if _wanted(f.path, patterns)}
        if not any(p.endswith(".safetensors") for p in wanted) and any(
            "safetensors" in p for p in patterns
        ):
            raise _Failure(
                "the revision has no .safetensors weights",
                "pick a revision that has safetensors weights (the convert script needs them)",
                f"files matched: {sorted(wanted) or 'none'}",
            )
        if "config.json" in patterns and "config.json" not in wanted:
            raise _Failure("the revision has no config.json", "check the repo and revision", "")

        try:
            snapshot_download(
                repo_id,
                revision=commit,
                local_dir=str(staging),
                cache_dir=str(work / "hf-cache"),
                allow_patterns=sorted(wanted),
                token=token if token else False,
                endpoint=endpoint,
                max_workers=4,
            )
        except Exception as e:
            raise _classify(e, repo_id=repo_id, token=token, endpoint=endpoint) from None

        files: dict[str, dict[str, Any]] = {}
        for path, entry in sorted(wanted.items()):
            local = staging / path
            if not local.is_file():
                raise _Failure(f"file '{path}' is missing after the download", "retry the download", "")
            size = local.stat().st_size
            expected_size = entry.lfs.size if entry.lfs is not None else entry.size
            if expected_size is not None and size != expected_size:
                raise _Failure(
                    f"file '{path}' is truncated or corrupt ({size} bytes, the hub announced {expected_size})",
                    "retry the download; if it persists, check the network or proxy for cut-off transfers",
                    "",
                )
            digest = sha256_file(local)
            if entry.lfs is not None and entry.lfs.sha256 and digest != entry.lfs.sha256:
                raise _Failure(
                    f"file '{path}' is corrupt (sha256 {digest}, the hub announced {entry.lfs.sha256})",
                    "retry the download; if it persists, report it to the repo owner",
                    "",
                )
            if entry.lfs is None and entry.blob_id and re.fullmatch(r"[0-9a-f]{40}", entry.blob_id):
                blob = _git_blob_sha1(local, size)
                if blob != entry.blob_id:
                    raise _Failure(
                        f"file '{path}' is corrupt (git blob sha1 {blob}, the hub announced {entry.blob_id})",
                        "retry the download",
                        "",
                    )
            files[path] = {"size": size, "sha256": digest, "lfs": entry.lfs is not None}

        # huggingface_hub's local_dir bookkeeping is not part of the model
        shutil.rmtree(staging / ".cache", ignore_errors=True)

        backup = None
        if dest.exists() or dest.is_symlink():
            backup = dest.parent / f".{dest.name}.old-{uuid.uuid4().hex[:12]}"
            os.replace(dest, backup)
        try:
            os.replace(staging, dest)
        except OSError:
            if backup is not None:
                os.replace(backup, dest)
            raise
        if backup is not None:
            shutil.rmtree(backup, ignore_errors=True)
        return {
            "model_id": model_id,
            "repo_id": repo_id,
            "revision": revision,
            "commit": commit,
            "endpoint": endpoint,
            "files": files,
        }
    except _Failure as f:
        raise fail(f) from None
    except HubError:
        raise
    except Exception as e:  # anything unforeseen: still one class, still scrubbed
        raise fail(_classify(e, repo_id=repo_id, token=token, endpoint=endpoint)) from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
