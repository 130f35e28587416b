"""Per-device snapshots on a real S3-compatible server (edgemoe/store.py): moto's server mode and
`rclone serve s3`, both on 127.0.0.1, started here. No pipeline: files stand in for a device's records."""
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

import s3_servers
from edgemoe import store as S
from edgemoe.store_snapshot import push_files, siblings

KINDS = ["moto", "rclone"]


@pytest.fixture(params=KINDS)
def server(request, tmp_path_factory, monkeypatch):
    srv = s3_servers.start(request.param, tmp_path_factory.mktemp(f"s3-{request.param}"))
    for k, v in srv.env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    yield srv
    srv.stop()


def store_of(srv, prefix="study"):
    return S.Store(f"s3://{s3_servers.BUCKET}/{prefix}", srv.endpoint)


def device_files(root, device, n=3, salt=""):
    """A device's fake records and context files in a work folder: {work path: local path}, records."""
    files, records = {}, []
    for i in range(n):
        rel = f"results/cells/{device}/e/m{i}/t/Q4/tg.jsonl"
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps({"device": device, "i": i, "salt": salt}) + "\n")
        (root / rel.replace(".jsonl", ".stderr.log")).write_text("log\n")
        files[rel] = str(p)
        records.append(rel)
    bw = root / f"results/bandwidth/{device}.json"
    bw.parent.mkdir(parents=True, exist_ok=True)
    bw.write_text('{"read_gbs": 10}\n')
    files[f"results/bandwidth/{device}.json"] = str(bw)
    return files, records


META = {"host": {"host_cpu": "test"}, "workflow": {"commit": "abc", "dirty": False}, "config_sha256": "c" * 64,
        "design": None, "kinds": ["bench"]}


def objects(srv, prefix):
    """{key: (ETag, LastModified)} under a prefix."""
    c = srv.client()
    out = {}
    for o in c.list_objects_v2(Bucket=s3_servers.BUCKET, Prefix=prefix).get("Contents", []):
        h = c.head_object(Bucket=s3_servers.BUCKET, Key=o["Key"])
        out[o["Key"]] = (h["ETag"], h["LastModified"])
    return out


def test_push_then_fetch_checks_every_file(server, tmp_path):
    st = store_of(server)
    files, records = device_files(tmp_path / "a", "cpu-a")
    m = S.push(st, "cpu-a", files, records, META)
    assert m["previous"] is None and set(m["files"]) == set(files) and m["records"] == sorted(records)
    got = S.fetch(st, "cpu-a", tmp_path / "fetched")
    assert got["snapshot"] == m["snapshot"]
    for rel, local in files.items():
        assert (tmp_path / "fetched" / rel).read_bytes() == open(local, "rb").read()
    assert json.loads((tmp_path / "fetched/snapshot.json").read_text())["snapshot"] == m["snapshot"]
    assert S.snapshots(st, "cpu-a") == [m["snapshot"]]


def test_a_rerun_device_moves_only_its_own_pointer_and_adds_a_snapshot(server, tmp_path):
    st = store_of(server)
    fa, ra = device_files(tmp_path / "a", "cpu-a")
    fb, rb = device_files(tmp_path / "b", "cpu-b")
    first = S.push(st, "cpu-a", fa, ra, META)
    S.push(st, "cpu-b", fb, rb, META)
    b_before = objects(server, st.device_prefix("cpu-b"))
    time.sleep(1.1)  # Last-Modified has one-second resolution
    fa, ra = device_files(tmp_path / "a", "cpu-a", salt="rerun")  # cpu-a reran its cells
    second = S.push(st, "cpu-a", fa, ra, META)
    assert objects(server, st.device_prefix("cpu-b")) == b_before  # ETag and Last-Modified unchanged
    assert second["previous"] == first["snapshot"] and S.snapshots(st, "cpu-a") == sorted([first["snapshot"],
                                                                                          second["snapshot"]])
    assert S.read_pointer(st, "cpu-a")[0]["snapshot"] == second["snapshot"]
    assert S.fetch(st, "cpu-a", tmp_path / "f")["snapshot"] == second["snapshot"]


def test_pushes_of_two_devices_at_once_lose_nothing(server, tmp_path):
    st = store_of(server)
    work = {d: device_files(tmp_path / d, d, n=8) for d in ("cpu-a", "cpu-b")}
    out, errors = {}, []

    def go(d):
        try:
            out[d] = S.push(st, d, *work[d], META)
        except Exception as e:  # noqa: BLE001
            errors.append(e)

    threads = [threading.Thread(target=go, args=(d,)) for d in work]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors
    for d in work:
        m = S.fetch(st, d, tmp_path / "f" / d)
        assert m["snapshot"] == out[d]["snapshot"] and set(m["files"]) == set(work[d][0])


PUSH_SCRIPT = """
import json, sys
from edgemoe import store as S
st = S.Store(sys.argv[1], sys.argv[2])
files = json.loads(open(sys.argv[3]).read())
S.push(st, "cpu-a", files, [], {})
"""


def test_a_push_killed_mid_upload_leaves_the_previous_pointer_and_the_next_push_completes(server, tmp_path):
    st = store_of(server)
    small, rec = device_files(tmp_path / "a", "cpu-a")
    first = S.push(st, "cpu-a", small, rec, META)
    many = {}
    for i in range(100):
        p = tmp_path / "big" / f"f{i:03d}.bin"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(os.urandom(4 << 10))
        many[f"results/cells/cpu-a/x/f{i:03d}.bin"] = str(p)
    (tmp_path / "files.json").write_text(json.dumps(many))
    proc = subprocess.Popen([sys.executable, "-c", PUSH_SCRIPT, st.url, st.endpoint_url, str(tmp_path / "files.json")],
                            env=os.environ.copy())
    blobs = st.device_prefix("cpu-a") + "blobs/"
    c, deadline = server.client(), time.monotonic() + 60
    while len(c.list_objects_v2(Bucket=s3_servers.BUCKET, Prefix=blobs).get("Contents", [])) < len(first["files"]) + 10:
        assert proc.poll() is None and time.monotonic() < deadline, "the push ended before it could be killed"
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert S.read_pointer(st, "cpu-a")[0]["snapshot"] == first["snapshot"]  # still the previous one, valid
    assert S.fetch(st, "cpu-a", tmp_path / "f1")["snapshot"] == first["snapshot"]
    lines = []
    again = S.push(st, "cpu-a", many, [], META, log=lines.append)
    assert again["previous"] == first["snapshot"] and len(again["files"]) == 100
    uploaded = int(lines[0].split(" uploaded")[0].rsplit(" ", 1)[1])
    assert uploaded < 100  # the killed push's blobs were reused
    assert S.fetch(st, "cpu-a", tmp_path / "f2")["snapshot"] == again["snapshot"]


def test_a_concurrent_push_of_the_same_device_cannot_move_its_pointer_twice(tmp_path, monkeypatch):
    srv = s3_servers.start("moto", tmp_path)  # the server that honours If-Match
    try:
        for k, v in srv.env().items():
            monkeypatch.setenv(k, v)
        st = store_of(srv)
        files, records = device_files(tmp_path / "a", "cpu-a")
        S.push(st, "cpu-a", files, records, META)
        real, raced = S._upload_blob, []

        def racing_upload(*a, **k):  # another push of cpu-a moves the pointer while this one uploads
            if not raced:
                raced.append(None)
                raced[0] = S.push(st, "cpu-a", files, records, {**META, "design": "other"})
            return real(*a, **k)

        monkeypatch.setattr(S, "_upload_blob", racing_upload)
        with pytest.raises(S.StoreError, match="device cpu-a: cannot move the pointer.*changed meanwhile"):
            S.push(st, "cpu-a", files, records, META)
        assert S.read_pointer(st, "cpu-a")[0]["snapshot"] == raced[0]["snapshot"]
    finally:
        srv.stop()


@pytest.mark.parametrize("damage", ["tampered", "truncated", "manifest"])
def test_a_tampered_or_truncated_object_is_refused_naming_device_and_object(server, tmp_path, damage):
    st = store_of(server)
    files, records = device_files(tmp_path / "a", "cpu-a")
    m = S.push(st, "cpu-a", files, records, META)
    c = server.client()
    rel = records[0]
    key = st.blob_key("cpu-a", m["files"][rel]["sha256"]) if damage != "manifest" else st.manifest_key("cpu-a", m["snapshot"])
    body = c.get_object(Bucket=s3_servers.BUCKET, Key=key)["Body"].read()
    c.put_object(Bucket=s3_servers.BUCKET, Key=key, Body=body[: len(body) // 2] if damage == "truncated"
                 else body.replace(b"cpu-a", b"cpu-A"))
    with pytest.raises(S.StoreError) as e:
        S.fetch(st, "cpu-a", tmp_path / "f")
    assert "device cpu-a" in str(e.value) and f"s3://{s3_servers.BUCKET}/{key}" in str(e.value)
    assert not (tmp_path / "f" / rel).exists() and not (tmp_path / "f/snapshot.json").exists()


def test_wrong_credentials_and_an_unreachable_store_are_clear_errors_without_the_secret(tmp_path, monkeypatch):
    srv = s3_servers.start("rclone", tmp_path)  # the server that checks credentials
    try:
        wrong = "WrongSecret-ShouldNeverBePrinted-77"
        for k, v in srv.env(secret=wrong).items():
            monkeypatch.setenv(k, v)
        files, records = device_files(tmp_path / "a", "cpu-a")
        with pytest.raises(S.StoreError, match="refused the credentials") as e:
            S.push(store_of(srv), "cpu-a", files, records, META)
        assert wrong not in str(e.value) and s3_servers.SECRET not in str(e.value)
    finally:
        srv.stop()
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_servers.SECRET)
    dead = S.Store(f"s3://{s3_servers.BUCKET}/x", f"http://127.0.0.1:{s3_servers.free_port()}")
    with pytest.raises(S.StoreError, match="unreachable") as e:
        S.check_access(dead, "cpu-a")
    assert s3_servers.SECRET not in str(e.value)


def test_scrub_and_url_checks():
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "")
    assert S.scrub("x SuperSecretValue y", ["SuperSecretValue"]) == "x *** y"
    with pytest.raises(S.StoreError, match="store.url"):
        S.Store.from_config({"url": "http://bucket"})
    assert S.Store("s3://bkt.1/a/b/").prefix == "a/b/" and S.Store("s3://bkt").prefix == ""
    with pytest.raises(S.StoreError, match="not a device id"):
        S.Store("s3://bkt").pointer_key("../x")


def test_push_files_follow_the_rounds_closing_file_and_take_siblings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for f in ["r/a.jsonl", "r/a.stderr.log", "r/a.llama-bench.jsonl", "r/a-2.jsonl", "r/decision.json", "ctx.json"]:
        (tmp_path / f).parent.mkdir(exist_ok=True)
        (tmp_path / f).write_text("{}\n")
    (tmp_path / "done.json").write_text(json.dumps({"records": ["r/a.jsonl"], "decisions": ["r/decision.json"]}))
    assert [p.name for p in siblings("r/a.jsonl")] == ["a.llama-bench.jsonl", "a.stderr.log"]
    files, records = push_files([], ["done.json"], ["ctx.json"])
    assert records == ["r/a.jsonl"]
    assert set(files) == {"r/a.jsonl", "r/a.stderr.log", "r/a.llama-bench.jsonl", "done.json", "r/decision.json",
                          "ctx.json"}


def test_runs_union_plans_no_cell_and_refuses_an_unreachable_store(tmp_path, monkeypatch):
    """`--config runs=union` on two devices' snapshots: fetches and analysis only; a dead store is
    an error before the DAG, naming the problem and never the secret."""
    from conftest import ROOT

    srv = s3_servers.start("moto", tmp_path)
    try:
        for k, v in srv.env().items():
            monkeypatch.setenv(k, v)
        st = store_of(srv)
        for d in ("cpu-a", "cpu-b"):
            S.push(st, d, *device_files(tmp_path / d, d), {**META, "kinds": ["bench", "profile"]})
        store = f"store={{url: {st.url}, endpoint_url: '{srv.endpoint}', devices: [cpu-a, cpu-b]}}"
        cmd = [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "figures/all", "--configfile",
               "config/smoke.yaml", "tests/configs/two-devices.yaml", "--config", "runs=union", store, "--quiet", "rules"]
        env = {k: v for k, v in os.environ.items() if k != "EDGEMOE_HOST_DEVICE"}
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=120)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0, out[-3000:]
        assert "union_fetch" in out and "figure_breakdown" in out
        for rule in ("engine_build", "twin_model", "bench_cell", "round_cell", "profile_cell", "bandwidth", "push"):
            assert rule not in out.split("Job stats")[-1], rule
    finally:
        srv.stop()
    dead = [c.replace(srv.endpoint, f"http://127.0.0.1:{s3_servers.free_port()}") for c in cmd]
    proc = subprocess.run(dead, cwd=ROOT, capture_output=True, text=True, env=env, timeout=120)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0 and "Store error" in out and "unreachable" in out, out[-2000:]
    assert s3_servers.SECRET not in proc.stdout + proc.stderr
