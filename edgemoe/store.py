"""Per-device snapshots on S3-compatible storage: push, pointer, verify, fetch (boto3).

One store (`store.url`: s3://<bucket>[/<prefix>]) holds, per device, everything it needs to rebuild
that device's part of the run table:

    <prefix>/devices/<device>/blobs/sha256/<sha256>      file contents, content-addressed (never rewritten
                                                          with other bytes: the key is the content's hash)
    <prefix>/devices/<device>/snapshots/<id>.json        a manifest: every file's path, sha256 and size, the
                                                          records, host facts, workflow commit, hashes, previous id
    <prefix>/devices/<device>/LATEST.json                the pointer: the newest snapshot and its manifest's sha256

A push writes blobs, then the manifest, then moves the pointer, in that order, so a push killed at
any point leaves the previous pointer and everything it names intact, and the next push reuses the
blobs already there. Only a device writes under its own prefix: pushes of different devices touch
disjoint keys. Writes are conditional where the server honours it (manifest: If-None-Match: *; pointer:
If-Match on the ETag read, or If-None-Match for a first push), so two pushes of the same device cannot
both move its pointer; a server that ignores the conditions (rclone serve s3 does) is last-writer-wins
for a device's own pointer only. A fetch checks the manifest against the pointer's hash and every file
against the manifest, and names the device and object of the first mismatch.

Credentials come from boto3's own chain (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, AWS_PROFILE,
~/.aws/credentials, instance roles); they are never written, and are scrubbed from every error message.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from edgemoe.files import atomic_path, atomic_write_json

FORMAT = 1
POINTER = "LATEST.json"
SECRET_ENV = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")
DEVICE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class StoreError(RuntimeError):
    """A store problem, naming the device and the object."""


@dataclass(frozen=True)
class Store:
    url: str  # s3://bucket[/prefix]
    endpoint_url: str | None = None  # None: AWS, or AWS_ENDPOINT_URL / the profile's endpoint_url
    region: str | None = None

    @classmethod
    def from_config(cls, cfg: dict[str, Any] | None) -> "Store":
        cfg = cfg or {}
        if not cfg.get("url"):
            raise StoreError("store.url: not set; give the store as s3://<bucket>[/<prefix>] "
                             "(--config store='{url: s3://..., devices: [...]}' or a config file)")
        store = cls(cfg["url"], cfg.get("endpoint_url") or None, cfg.get("region") or None)
        store.bucket  # noqa: B018  (checks the URL)
        return store

    @property
    def bucket(self) -> str:
        m = re.fullmatch(r"s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(/.*)?", self.url)
        if not m:
            raise StoreError(f"store.url: {self.url!r} is not s3://<bucket>[/<prefix>] (bucket: 3-63 lower-case "
                             "letters, digits, dots, hyphens)")
        return m.group(1)

    @property
    def prefix(self) -> str:
        rest = self.url[len(f"s3://{self.bucket}"):].strip("/")
        return f"{rest}/" if rest else ""

    def device_prefix(self, device: str) -> str:
        if not DEVICE_RE.match(device):
            raise StoreError(f"store: {device!r} is not a device id")
        return f"{self.prefix}devices/{device}/"

    def blob_key(self, device: str, sha256: str) -> str:
        return f"{self.device_prefix(device)}blobs/sha256/{sha256}"

    def manifest_key(self, device: str, snapshot: str) -> str:
        return f"{self.device_prefix(device)}snapshots/{snapshot}.json"

    def pointer_key(self, device: str) -> str:
        return self.device_prefix(device) + POINTER

    def where(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"


# ---- client and errors ------------------------------------------------------------------------
def client(store: Store):
    """A boto3 S3 client: path-style addressing for a custom endpoint, short connect timeouts, and
    checksums only where an operation requires them (S3-compatible servers differ; every file is
    checked by sha256 on fetch)."""
    import boto3
    from botocore.config import Config

    cfg = Config(connect_timeout=5, read_timeout=60, retries={"max_attempts": 3, "mode": "standard"},
                 s3={"addressing_style": "path"} if store.endpoint_url or os.environ.get("AWS_ENDPOINT_URL") else {},
                 request_checksum_calculation="when_required", response_checksum_validation="when_required")
    return boto3.session.Session().client("s3", endpoint_url=store.endpoint_url, region_name=store.region,
                                          config=cfg)


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """text with every credential value this process knows replaced by ***."""
    for s in [*(os.environ.get(k) for k in SECRET_ENV), *secrets]:
        if s and len(s) >= 4:
            text = text.replace(s, "***")
    return text


def explain(e: Exception, store: Store, device: str | None, key: str | None, doing: str) -> StoreError:
    """A boto3/botocore failure as a StoreError naming the device, the object and what to do."""
    from botocore import exceptions as bx

    who = f"device {device}: " if device else ""
    obj = store.where(key) if key else f"s3://{store.bucket}"
    at = store.endpoint_url or os.environ.get("AWS_ENDPOINT_URL") or "AWS S3"
    if isinstance(e, (bx.NoCredentialsError, bx.PartialCredentialsError)):
        why = ("no credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE "
               "(~/.aws/credentials)")
    elif isinstance(e, (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ReadTimeoutError)):
        why = f"the store at {at} is unreachable ({type(e).__name__}); check store.endpoint_url and the network"
    elif isinstance(e, bx.ClientError):
        code = str(e.response.get("Error", {}).get("Code", ""))
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403", "Forbidden") or status == 403:
            why = (f"the store at {at} refused the credentials ({code or status}): check AWS_ACCESS_KEY_ID / "
                   "AWS_SECRET_ACCESS_KEY or AWS_PROFILE, and that they may read and write this bucket")
        elif code in ("NoSuchBucket",) or (status == 404 and key is None):
            why = f"bucket {store.bucket} does not exist at {at}; create it first"
        elif code in ("NoSuchKey", "404") or status == 404:
            why = "object not found"
        elif code == "PreconditionFailed" or status == 412:
            why = "the object changed meanwhile (a concurrent push of this device?)"
        else:
            why = f"{code or status}: {e.response.get('Error', {}).get('Message', '')}"
    else:
        why = f"{type(e).__name__}: {e}"
    return StoreError(scrub(f"store: {who}{doing} {obj}: {why}"))


def _code(e: Exception) -> str:
    return str(getattr(e, "response", {}).get("Error", {}).get("Code", "")) if hasattr(e, "response") else ""


def _status(e: Exception) -> int | None:
    return getattr(e, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode") if hasattr(e, "response") else None


def check_access(store: Store, device: str | None = None, s3=None) -> str:
    """Reach the store and its bucket with the credentials at hand (before any cell runs); one line
    saying so, or a StoreError saying what is wrong."""
    s3 = s3 or client(store)
    try:
        s3.head_bucket(Bucket=store.bucket)
        s3.list_objects_v2(Bucket=store.bucket, Prefix=store.device_prefix(device) if device else store.prefix,
                           MaxKeys=1)  # servers that allow HEAD anonymously still check a listing
    except Exception as e:  # noqa: BLE001  (botocore raises many kinds; each is explained)
        raise explain(e, store, device, None, "cannot reach") from None
    return f"store: {store.url} reachable" + (f" (device {device} pushes there)" if device else "")


# ---- reading ----------------------------------------------------------------------------------
def _get(s3, store: Store, device: str, key: str, doing: str) -> tuple[bytes, str]:
    try:
        r = s3.get_object(Bucket=store.bucket, Key=key)
        return r["Body"].read(), r.get("ETag", "")
    except Exception as e:  # noqa: BLE001
        raise explain(e, store, device, key, doing) from None


def read_pointer(store: Store, device: str, s3=None) -> tuple[dict[str, Any] | None, str | None]:
    """(the device's pointer, its ETag), or (None, None) where the device has never pushed."""
    s3 = s3 or client(store)
    key = store.pointer_key(device)
    try:
        r = s3.get_object(Bucket=store.bucket, Key=key)
    except Exception as e:  # noqa: BLE001
        if _code(e) in ("NoSuchKey", "404") or _status(e) == 404:
            return None, None
        raise explain(e, store, device, key, "cannot read the pointer") from None
    body = r["Body"].read()
    try:
        pointer = json.loads(body)
        assert pointer["device"] == device and pointer["snapshot"] and pointer["manifest_sha256"]
    except (ValueError, KeyError, TypeError, AssertionError):
        raise StoreError(f"store: device {device}: the pointer {store.where(key)} is not a snapshot pointer "
                         "(corrupt or written by something else); push again from that device") from None
    return pointer, r.get("ETag")


def read_manifest(store: Store, device: str, s3=None) -> dict[str, Any]:
    """The device's latest manifest, checked against the pointer's hash."""
    s3 = s3 or client(store)
    pointer, _ = read_pointer(store, device, s3)
    if pointer is None:
        raise StoreError(f"store: device {device} has no snapshot in {store.url} "
                         f"({store.where(store.pointer_key(device))} not found); run `snakemake push` on that device, "
                         "or leave it out of store.devices")
    key = store.manifest_key(device, pointer["snapshot"])
    body, _ = _get(s3, store, device, key, "cannot read the manifest")
    if hashlib.sha256(body).hexdigest() != pointer["manifest_sha256"]:
        raise StoreError(f"store: device {device}: manifest {store.where(key)} does not match its pointer's sha256 "
                         "(tampered or truncated); refusing snapshot " + pointer["snapshot"])
    manifest = json.loads(body)
    if manifest.get("device") != device or manifest.get("snapshot") != pointer["snapshot"]:
        raise StoreError(f"store: device {device}: manifest {store.where(key)} names device "
                         f"{manifest.get('device')!r}, snapshot {manifest.get('snapshot')!r}; refusing it")
    return manifest


def _safe_rel(device: str, rel: str) -> str:
    p = Path(rel)
    if p.is_absolute() or ".." in p.parts or not rel:
        raise StoreError(f"store: device {device}: manifest path {rel!r} leaves the work folder; refusing it")
    return rel


def fetch(store: Store, device: str, dest: Path | str, snapshot: str | None = None, s3=None) -> dict[str, Any]:
    """Download the device's latest snapshot under dest/<path>, each file checked against the
    manifest (sha256 and size) before it is renamed into place; dest/snapshot.json last (the
    manifest). A snapshot other than `snapshot` (the pointer moved since the DAG was planned) is an error."""
    s3 = s3 or client(store)
    dest = Path(dest)
    manifest = read_manifest(store, device, s3)
    if snapshot and manifest["snapshot"] != snapshot:
        raise StoreError(f"store: device {device}: its pointer moved to {manifest['snapshot']} after this run was "
                         f"planned for {snapshot}; run the workflow again")
    for rel, f in sorted(manifest["files"].items()):
        key = store.blob_key(device, f["sha256"])
        out = dest / _safe_rel(device, rel)
        try:
            body = s3.get_object(Bucket=store.bucket, Key=key)["Body"]
        except Exception as e:  # noqa: BLE001
            raise explain(e, store, device, key, f"cannot fetch {rel} from") from None
        h, n = hashlib.sha256(), 0
        with atomic_path(out) as tmp:
            with open(tmp, "wb") as fh:
                for chunk in iter(lambda: body.read(1 << 20), b""):
                    h.update(chunk)
                    n += len(chunk)
                    fh.write(chunk)
            if h.hexdigest() != f["sha256"] or n != f["bytes"]:
                raise StoreError(f"store: device {device}: object {store.where(key)} ({rel}) is corrupt: {n} bytes "
                                 f"with sha256 {h.hexdigest()[:16]}..., the manifest of snapshot {manifest['snapshot']} "
                                 f"says {f['bytes']} bytes, {f['sha256'][:16]}... (tampered or truncated); "
                                 "refusing it: push again from that device")
    atomic_write_json(dest / "snapshot.json", manifest)
    return manifest


# ---- pushing ----------------------------------------------------------------------------------
def _put(s3, store: Store, device: str, key: str, body: bytes, doing: str, **cond) -> dict[str, Any]:
    """put_object with optional If-None-Match / If-Match; a server that does not implement the
    condition (501) gets the plain write (documented: last writer wins for that device's pointer)."""
    try:
        return s3.put_object(Bucket=store.bucket, Key=key, Body=body, **cond)
    except Exception as e:  # noqa: BLE001
        if cond and (_code(e) == "NotImplemented" or _status(e) == 501):
            return _put(s3, store, device, key, body, doing)
        raise explain(e, store, device, key, doing) from None


def _digests(path: Path) -> tuple[str, str]:
    """(sha256, md5) of a file: the blob's name, and the ETag an S3 server gives a single-part upload."""
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while b := f.read(1 << 20):
            sha.update(b)
            md5.update(b)
    return sha.hexdigest(), md5.hexdigest()


def _blob_there(s3, store: Store, key: str, sha256: str, md5: str, size: int) -> bool:
    """The blob is stored in full: its size, and its sha256 metadata or (servers that keep no user
    metadata, as rclone's local backend) its single-part ETag, match the file."""
    try:
        h = s3.head_object(Bucket=store.bucket, Key=key)
    except Exception:  # noqa: BLE001  (missing, or unreadable: upload it)
        return False
    meta = h.get("Metadata", {}).get("sha256")
    return h.get("ContentLength") == size and (meta == sha256 or (not meta and h.get("ETag", "").strip('"') == md5))


def _upload_blob(s3, store: Store, device: str, rel: str, path: Path, sha256: str, md5: str, size: int) -> bool:
    """Upload one file's content under its hash, unless it is there already; True if uploaded."""
    key = store.blob_key(device, sha256)
    if _blob_there(s3, store, key, sha256, md5, size):
        return False
    try:
        with open(path, "rb") as fh:
            s3.put_object(Bucket=store.bucket, Key=key, Body=fh, ContentLength=size, Metadata={"sha256": sha256})
    except Exception as e:  # noqa: BLE001
        raise explain(e, store, device, key, f"cannot upload {rel} to") from None
    if not _blob_there(s3, store, key, sha256, md5, size):
        raise StoreError(f"store: device {device}: {store.where(key)} ({rel}) is not there in full after its upload")
    return True


def snapshot_id(device: str, body: Any, when: datetime) -> str:
    """<UTC time>-<12 hex>: sorts by time; the hex hashes the content, the time to the microsecond and
    8 random bytes, so two pushes never share an id (even of the same files in the same second)."""
    seed = json.dumps([device, body, when.isoformat(), os.urandom(8).hex()], sort_keys=True, default=str)
    return f"{when:%Y%m%dT%H%M%SZ}-{hashlib.sha256(seed.encode()).hexdigest()[:12]}"


def push(store: Store, device: str, files: dict[str, Path | str], records: list[str], meta: dict[str, Any],
         s3=None, log=None) -> dict[str, Any]:
    """Publish one snapshot of `files` ({path in the work folder: local file}) as the device's
    latest; `records` are the run-record paths among them (what the union's run table reads);
    `meta`: host, workflow, config and design facts for the manifest. Returns the manifest."""
    s3 = s3 or client(store)
    check_access(store, device, s3)
    pointer, etag = read_pointer(store, device, s3)
    if missing := sorted(set(records) - set(files)):
        raise StoreError(f"store: device {device}: records {missing[:3]} are not among the files to push")
    entries, uploaded = {}, 0
    for rel in sorted(files):
        path = Path(files[rel])
        sha, md5 = _digests(path)
        entries[_safe_rel(device, rel)] = {"sha256": sha, "bytes": path.stat().st_size}
        uploaded += _upload_blob(s3, store, device, rel, path, sha, md5, entries[rel]["bytes"])
    when = datetime.now(timezone.utc)
    sid = snapshot_id(device, [entries, meta, pointer], when)
    manifest = {"format": FORMAT, "device": device, "snapshot": sid, "created_utc": when.isoformat(),
                "previous": pointer["snapshot"] if pointer else None, "files": entries, "records": sorted(records),
                **meta}
    body = json.dumps(manifest, indent=1, sort_keys=True).encode()
    mkey = store.manifest_key(device, sid)
    _put(s3, store, device, mkey, body, "cannot write the manifest", IfNoneMatch="*")
    new = {"format": FORMAT, "device": device, "snapshot": sid, "manifest_sha256": hashlib.sha256(body).hexdigest(),
           "pushed_utc": when.isoformat()}
    cond = {"IfMatch": etag} if etag else {"IfNoneMatch": "*"}
    _put(s3, store, device, store.pointer_key(device), json.dumps(new, sort_keys=True).encode(),
         f"cannot move the pointer (snapshot {sid} is stored; push again) at", **cond)
    if log:
        log(f"store: device {device}: snapshot {sid} ({len(entries)} files, {uploaded} uploaded, previous "
            f"{manifest['previous']}) -> {store.where(store.pointer_key(device))}")
    return manifest


def snapshots(store: Store, device: str, s3=None) -> list[str]:
    """Every snapshot id the device has pushed, oldest first."""
    s3 = s3 or client(store)
    prefix = store.device_prefix(device) + "snapshots/"
    out = []
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=store.bucket, Prefix=prefix):
            out += [o["Key"][len(prefix):-len(".json")] for o in page.get("Contents", []) if o["Key"].endswith(".json")]
    except Exception as e:  # noqa: BLE001
        raise explain(e, store, device, prefix, "cannot list") from None
    return sorted(out)
