"""JsonlWriter under a real kill -9: every record ends up in the file exactly once after resuming."""
import json, os, signal, subprocess, sys, textwrap, time
from pathlib import Path

from mlprep.core import read_jsonl, BadRows

WRITER = textwrap.dedent('''
    import sys
    from mlprep.core import JsonlWriter
    path, n = sys.argv[1], int(sys.argv[2])
    pad = 'x' * 20000            # big records make a kill inside a write likely
    with JsonlWriter(path, key='sample_idx', fsync_every=None) as w:
        print(len(w.done), flush=True)
        for i in range(n):
            if i in w.done: continue
            w.write({'sample_idx': i, 'text': f'record {i} ' + pad})
''')


def run_writer(path, n, kill_after=None):
    p = subprocess.Popen([sys.executable, '-c', WRITER, str(path), str(n)], stdout=subprocess.PIPE, text=True)
    first = p.stdout.readline()               # the writer has opened the file and says how many it found
    if kill_after is not None:
        deadline = time.time() + 30
        while time.time() < deadline and (not path.exists() or path.stat().st_size < kill_after): time.sleep(0.001)
        os.kill(p.pid, signal.SIGKILL)
    p.wait(timeout=120)
    return p.returncode, int(first)


def test_kill_and_resume(tmp_path):
    path, n = tmp_path / 'data.jsonl', 3000
    rc, found = run_writer(path, n, kill_after=5_000_000)
    assert rc == -signal.SIGKILL and found == 0
    size_after_kill = path.stat().st_size
    assert 0 < size_after_kill < n * 20000, 'the kill should land mid-run'
    rc, found = run_writer(path, n)
    assert rc == 0 and 0 < found < n
    bad = BadRows()
    ids = [r['sample_idx'] for _, r in read_jsonl(path, bad)]
    assert bad.total == 0, bad.summary()
    assert sorted(ids) == list(range(n)) and len(ids) == n, 'every record exactly once'
    assert path.read_bytes().endswith(b'\n')


def test_kill_many_times(tmp_path):
    """Kill the writer at several points in a row; the file converges to every record once."""
    path, n = tmp_path / 'data.jsonl', 800
    for k in range(1, 4):
        run_writer(path, n, kill_after=k * 4_000_000 // 2)
    run_writer(path, n)
    ids = [r['sample_idx'] for _, r in read_jsonl(path)]
    assert sorted(ids) == list(range(n))
