"""A tiny local stand-in for the Hugging Face hub, for offline tests of ``edgemoe.hub``.

It answers the endpoints huggingface_hub 2.4.0 uses in ``snapshot_download``:

- ``GET /api/models/{repo}/revision/{rev}`` (``HfApi.model_info``): repo info with ``sha``;
- ``GET /api/models/{repo}/tree/{rev}?recursive=...`` (``HfApi.list_repo_tree``): file entries
  with ``oid`` (git blob sha1), ``size`` and, for LFS files, ``lfs {oid: sha256, size}``;
- ``HEAD``/``GET /{repo}/resolve/{rev}/{path}`` (``hf_hub_download``): small files answer 200 with
  ``ETag`` (blob sha1), ``X-Repo-Commit`` and ``Content-Length``; LFS files answer 302 to a
  "CDN" (a second listener on another port, so huggingface_hub drops the Authorization header as
  it does for the real CDN) with ``X-Linked-Etag`` (sha256), ``X-Linked-Size`` and
  ``X-Repo-Commit``.

Errors carry the real hub's ``X-Error-Code`` / ``X-Error-Message`` headers and JSON body:
``RepoNotFound`` (404), ``RevisionNotFound`` (404), ``EntryNotFound`` (404), ``GatedRepo`` (401
without a token, 403 with a token not granted access), and 401 "Invalid credentials in
Authorization header" for a token the server does not know. Like the real hub, a gated repo's
info and file list are public; only its files need a granted token.

Fault injection: ``truncate(repo, path, keep)`` serves only the first ``keep`` bytes of a file
(with a matching short Content-Length, as a cut-off proxy would), ``corrupt(repo, path)`` flips a
byte without changing the size, ``stop()`` shuts the server down (connections are refused).

Everything binds to 127.0.0.1 on free ports; ``requests`` logs (method, path, had_auth).
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

__all__ = ["HubServer", "FakeRepo"]

LFS_SUFFIXES = (".safetensors", ".bin", ".model", ".gguf", ".pt", ".pth", ".h5", ".msgpack")
LFS_MIN_SIZE = 10 * 1024 * 1024


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class FakeFile:
    path: str
    data: bytes
    lfs: bool

    @property
    def blob_id(self) -> str:
        if self.lfs:  # the git blob of an LFS file is its pointer file
            return git_blob_sha1(self.pointer)
        return git_blob_sha1(self.data)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def pointer(self) -> bytes:
        return (
            f"version https://git-lfs.github.com/spec/v1\noid sha256:{self.sha256}\nsize {len(self.data)}\n"
        ).encode()


@dataclass
class FakeRepo:
    repo_id: str
    files: dict[str, FakeFile]
    commit: str
    refs: dict[str, str] = field(default_factory=dict)  # branch/tag name -> commit
    gated: bool = False
    granted: set[str] = field(default_factory=set)  # tokens granted access to a gated repo


class HubServer:
    """Local hub. Use as a context manager, or call :meth:`start` / :meth:`stop`."""

    def __init__(self) -> None:
        self.repos: dict[str, FakeRepo] = {}
        self.valid_tokens: set[str] = set()
        self.requests: list[tuple[str, str, bool]] = []
        self._truncated: dict[tuple[str, str], int] = {}
        self._corrupted: set[tuple[str, str]] = set()
        self._lock = threading.Lock()
        self._hub: ThreadingHTTPServer | None = None
        self._cdn: ThreadingHTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self._conns: set[socket.socket] = set()
        self.stopped = False
        self.endpoint = ""
        self.cdn_endpoint = ""

    # -- content --------------------------------------------------------------------------
    def add_token(self, token: str) -> None:
        self.valid_tokens.add(token)

    def add_repo(
        self,
        repo_id: str,
        files: dict[str, bytes] | str | Path,
        *,
        gated: bool = False,
        granted: tuple[str, ...] | set[str] = (),
        refs: tuple[str, ...] = ("main",),
    ) -> str:
        """Publish a repo (a folder, or path -> bytes). Returns its commit sha (40 hex)."""
        if not isinstance(files, dict):
            root = Path(files)
            files = {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
        ff = {
            path: FakeFile(path, data, path.endswith(LFS_SUFFIXES) or len(data) >= LFS_MIN_SIZE)
            for path, data in sorted(files.items())
        }
        h = hashlib.sha1(repo_id.encode())
        for f in ff.values():
            h.update(f.path.encode() + b"\0" + f.blob_id.encode())
        commit = h.hexdigest()
        self.repos[repo_id] = FakeRepo(
            repo_id, ff, commit, {r: commit for r in refs}, gated=gated, granted=set(granted)
        )
        return commit

    def truncate(self, repo_id: str, path: str, keep: int) -> None:
        self._truncated[(repo_id, path)] = keep

    def corrupt(self, repo_id: str, path: str) -> None:
        self._corrupted.add((repo_id, path))

    def body_of(self, repo: FakeRepo, f: FakeFile) -> bytes:
        data = f.data
        if (repo.repo_id, f.path) in self._corrupted and data:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        keep = self._truncated.get((repo.repo_id, f.path))
        if keep is not None:
            data = data[:keep]
        return data

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> str:
        self.stopped = False
        self._cdn = _Server(self, _make_handler(self, cdn=True))
        self._hub = _Server(self, _make_handler(self, cdn=False))
        for srv in (self._cdn, self._hub):
            t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
            t.start()
            self._threads.append(t)
        self.cdn_endpoint = f"http://127.0.0.1:{self._cdn.server_address[1]}"
        self.endpoint = f"http://127.0.0.1:{self._hub.server_address[1]}"
        return self.endpoint

    def stop(self) -> None:
        """Shut down: stop listening and cut every open (keep-alive) connection."""
        self.stopped = True
        for srv in (self._hub, self._cdn):
            if srv is not None:
                srv.shutdown()
                srv.server_close()
        with self._lock:
            conns = list(self._conns)
            self._conns.clear()
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self._threads:
            t.join(timeout=5)
        self._threads.clear()
        self._hub = self._cdn = None

    def __enter__(self) -> "HubServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- request handling -----------------------------------------------------------------
    def resolve_rev(self, repo: FakeRepo, rev: str) -> str | None:
        rev = unquote(rev)
        if rev in repo.refs:
            return repo.refs[rev]
        if rev == repo.commit:
            return rev
        return None


class _Server(ThreadingHTTPServer):
    """Binds 127.0.0.1 on a free port and tracks open connections so stop() can cut them."""

    daemon_threads = True

    def __init__(self, hub: HubServer, handler) -> None:
        self.hub = hub
        super().__init__(("127.0.0.1", 0), handler)

    def process_request(self, request, client_address) -> None:
        with self.hub._lock:
            self.hub._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:
        with self.hub._lock:
            self.hub._conns.discard(request)
        super().shutdown_request(request)


def _make_handler(server: HubServer, cdn: bool):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "fake-hub/1.0"

        def log_message(self, *args) -> None:  # quiet
            pass

        # -- helpers
        def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None,
                  content_type: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD" and body:
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        def _error(self, status: int, code: str | None, message: str, extra: dict[str, str] | None = None) -> None:
            headers = {"X-Error-Message": message}
            if code:
                headers["X-Error-Code"] = code
            headers.update(extra or {})
            self._send(status, json.dumps({"error": message}).encode(), headers)

        def _token(self) -> tuple[str | None, bool]:
            """(token, ok): ok is False for a token the hub does not know."""
            auth = self.headers.get("Authorization")
            if not auth:
                return None, True
            tok = auth.split(" ", 1)[1].strip() if " " in auth else auth.strip()
            return tok, tok in server.valid_tokens

        def _json(self, obj) -> None:
            self._send(200, json.dumps(obj).encode())

        # -- dispatch
        def do_HEAD(self) -> None:
            self._dispatch()

        def do_GET(self) -> None:
            self._dispatch()

        def _dispatch(self) -> None:
            if server.stopped:
                self.close_connection = True
                self.connection.close()
                return
            url = urlsplit(self.path)
            with server._lock:
                server.requests.append((self.command, self.path, bool(self.headers.get("Authorization"))))
            try:
                if cdn:
                    return self._cdn(url)
                token, ok = self._token()
                if not ok:
                    return self._error(401, None, "Invalid credentials in Authorization header")
                path = unquote(url.path)
                if path.startswith("/api/models/"):
                    return self._api(path[len("/api/models/"):], parse_qs(url.query))
                if "/resolve/" in path:
                    return self._resolve(path, token)
                return self._error(404, None, "Not Found")
            except Exception as e:  # pragma: no cover - a bug in the fake
                return self._error(500, None, f"fake hub error: {type(e).__name__}: {e}")

        def _repo(self, repo_id: str) -> FakeRepo | None:
            repo = server.repos.get(repo_id)
            if repo is None:
                self._error(404, "RepoNotFound", "Repository not found")
            return repo

        def _api(self, rest: str, query: dict) -> None:
            if "/revision/" in rest:
                repo_id, rev = rest.split("/revision/", 1)
                kind = "info"
            elif "/tree/" in rest:
                repo_id, rest2 = rest.split("/tree/", 1)
                rev, _, sub = rest2.partition("/")
                kind = "tree"
            else:
                repo_id, rev, kind = rest.rstrip("/"), "main", "info"
            repo = self._repo(repo_id)
            if repo is None:
                return
            commit = server.resolve_rev(repo, rev)
            if commit is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {unquote(rev)}")
            if kind == "info":
                return self._json(
                    {
                        "_id": hashlib.md5(repo.repo_id.encode()).hexdigest()[:24],
                        "id": repo.repo_id,
                        "modelId": repo.repo_id,
                        "author": repo.repo_id.split("/")[0],
                        "sha": commit,
                        "lastModified": "2025-01-01T00:00:00.000Z",
                        "private": False,
                        "disabled": False,
                        "gated": "manual" if repo.gated else False,
                        "downloads": 0,
                        "likes": 0,
                        "tags": ["transformers", "safetensors"],
                        "library_name": "transformers",
                        "siblings": [{"rfilename": p} for p in repo.files],
                    }
                )
            recursive = (query.get("recursive") or ["false"])[0].lower() == "true"
            prefix = (sub.rstrip("/") + "/") if sub else ""
            entries, dirs = [], set()
            for f in repo.files.values():
                if not f.path.startswith(prefix):
                    continue
                rel = f.path[len(prefix):]
                parts = rel.split("/")
                if len(parts) > 1:
                    for i in range(1, len(parts) if recursive else 2):
                        dirs.add(prefix + "/".join(parts[:i]))
                    if not recursive:
                        continue
                e = {"type": "file", "oid": f.blob_id, "size": len(f.data), "path": f.path}
                if f.lfs:
                    e["lfs"] = {"oid": f.sha256, "size": len(f.data), "pointerSize": len(f.pointer)}
                entries.append(e)
            for d in sorted(dirs):
                entries.append({"type": "directory", "oid": hashlib.sha1(d.encode()).hexdigest(), "size": 0, "path": d})
            return self._json(entries)

        def _resolve(self, path: str, token: str | None) -> None:
            repo_id, rest = path.lstrip("/").split("/resolve/", 1)
            rev, _, filename = rest.partition("/")
            repo = self._repo(repo_id)
            if repo is None:
                return
            commit = server.resolve_rev(repo, rev)
            if commit is None:
                return self._error(404, "RevisionNotFound", f"Invalid rev id: {unquote(rev)}")
            if repo.gated:
                if token is None:
                    return self._error(
                        401, "GatedRepo",
                        f"Access to model {repo.repo_id} is restricted. You must have access to it and be "
                        "authenticated to access it. Please log in.",
                        {"X-Repo-Commit": commit},
                    )
                if token not in repo.granted:
                    return self._error(
                        403, "GatedRepo",
                        f"Access to model {repo.repo_id} is restricted and you are not in the authorized list. "
                        f"Visit https://huggingface.co/{repo.repo_id} to ask for access.",
                        {"X-Repo-Commit": commit},
                    )
            f = repo.files.get(filename)
            if f is None:
                return self._error(404, "EntryNotFound", f"{filename} does not exist on \"{unquote(rev)}\"",
                                   {"X-Repo-Commit": commit})
            if f.lfs:
                location = f"{server.cdn_endpoint}/{quote(repo.repo_id)}/{f.sha256}?filename={quote(filename)}"
                return self._send(
                    302, b"",
                    {
                        "Location": location,
                        "ETag": f'"{f.sha256}"',
                        "X-Linked-Etag": f'"{f.sha256}"',
                        "X-Linked-Size": str(len(f.data)),
                        "X-Repo-Commit": commit,
                        "Accept-Ranges": "bytes",
                    },
                    content_type="text/plain; charset=utf-8",
                )
            return self._file(repo, f, {"ETag": f'"{f.blob_id}"', "X-Repo-Commit": commit})

        def _file(self, repo: FakeRepo, f: FakeFile, headers: dict[str, str]) -> None:
            body = server.body_of(repo, f)
            headers = dict(headers, **{"Accept-Ranges": "bytes"})
            rng = self.headers.get("Range")
            if rng and rng.startswith("bytes=") and self.command == "GET":
                start_s, _, end_s = rng[len("bytes="):].partition("-")
                start = int(start_s or 0)
                end = int(end_s) if end_s else len(body) - 1
                if start >= len(body):
                    return self._send(416, b"", dict(headers, **{"Content-Range": f"bytes */{len(body)}"}))
                part = body[start:end + 1]
                headers["Content-Range"] = f"bytes {start}-{start + len(part) - 1}/{len(body)}"
                return self._send(206, part, headers, content_type="application/octet-stream")
            return self._send(200, body, headers, content_type="application/octet-stream")

        def _cdn(self, url) -> None:
            path = unquote(url.path).lstrip("/")
            repo_id, _, sha = path.rpartition("/")
            repo = server.repos.get(repo_id)
            f = next((x for x in (repo.files.values() if repo else []) if x.sha256 == sha), None)
            if repo is None or f is None:
                return self._send(404, b"NoSuchKey", content_type="text/plain")
            return self._file(repo, f, {"ETag": f'"{f.sha256}"'})

    return Handler
