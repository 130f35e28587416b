"""The cell runner's measurement of a child process, with stand-in children."""
import os
import sys
import textwrap
import threading
import time

from edgemoe.cells import classify
from edgemoe.process import ProcessResult, bench_lock, child_env, run_measured


def script(tmp_path, body):
    p = tmp_path / "child.py"
    p.write_text(textwrap.dedent(body))
    return [sys.executable, str(p)]


def test_peak_rss_is_the_childs_own(tmp_path):
    cmd = script(tmp_path, """
        import time
        buf = bytearray(300 * 1024 * 1024)
        for i in range(0, len(buf), 4096): buf[i] = 1
        print('{"done": 1}', flush=True)
    """)
    r = run_measured(cmd, timeout_s=60, env=dict(os.environ), stderr_path=tmp_path / "err")
    assert r.exit_code == 0 and 300e6 < r.peak_rss_bytes < 450e6
    small = run_measured(script(tmp_path, "print(1)"), timeout_s=60, env=dict(os.environ),
                         stderr_path=tmp_path / "err2")
    assert small.peak_rss_bytes < 100e6  # not the running maximum over all children


def test_timeout_kills_and_says_so(tmp_path):
    r = run_measured(script(tmp_path, "import time; time.sleep(60)"), timeout_s=1, env=dict(os.environ),
                     stderr_path=tmp_path / "err")
    assert r.timed_out and r.wall_s < 10
    assert classify(r, [], 2) == ("timeout", "killed after the cell's timeout (1 s)")


def test_memory_limit_gives_oom(tmp_path):
    cmd = script(tmp_path, """
        import sys
        try:
            buf = bytearray(2 * 1024**3)
        except MemoryError:
            sys.stderr.write("ggml_aligned_malloc: insufficient memory (attempted to allocate 2048 MB)\\n")
            sys.exit(1)
    """)
    r = run_measured(cmd, timeout_s=60, env=dict(os.environ), stderr_path=tmp_path / "err",
                     memory_limit_bytes=500 * 1024**2)
    status, reason = classify(r, [], 2)
    assert status == "oom" and "insufficient memory" in reason and r.peak_rss_bytes > 0


def test_stdout_lines_are_stamped_on_arrival(tmp_path):
    cmd = script(tmp_path, "import time; print('a', flush=True); time.sleep(0.5); print('b', flush=True)")
    r = run_measured(cmd, timeout_s=60, env=dict(os.environ), stderr_path=tmp_path / "err")
    (t1, a), (t2, b) = r.stdout_lines
    assert (a, b) == ("a\n", "b\n") and 0.3e9 < t2 - t1 < 2e9


def test_crash_and_missing_results_are_crashes():
    base = dict(exit_code=0, signal=None, timed_out=False, peak_rss_bytes=1, sys_mem_used_peak_bytes=None,
                file_pmd_mapped_peak_bytes=None, wall_s=1, start_utc="", end_utc="")
    assert classify(ProcessResult(**base), [{}], 2)[0] == "crash"
    assert classify(ProcessResult(**dict(base, exit_code=None, signal=11)), [], 2) == ("crash", "killed by signal SIGSEGV")
    assert classify(ProcessResult(**base), [{}, {}], 2) == ("ok", "")


def test_lock_serialises(tmp_path):
    spans = []

    def hold():
        with bench_lock(tmp_path / "l"):
            t0 = time.monotonic()
            time.sleep(0.3)
            spans.append((t0, time.monotonic()))

    threads = [threading.Thread(target=hold) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    spans.sort()
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))


def test_child_env_pins_threads_and_drops_tokens(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    env = child_env(2)
    assert env["OMP_NUM_THREADS"] == "2" and "HF_TOKEN" not in env


def test_warnings_name_a_busy_host():
    from edgemoe.cells import cell_warnings

    assert cell_warnings([], load_before=0.0, power_mode=None) == []
    assert cell_warnings([], load_before=2.5, power_mode=None) == []  # the previous cell's own load
    (w,) = cell_warnings([], load_before=50.0, power_mode=None)
    assert w.startswith("host busy before the cell (1-min load average 50.0")
