"""`mlprep datagen` end to end: kill -9 and resume, shards and merge, bad and over-long prompts."""
import json, os, signal, subprocess, sys, time
from pathlib import Path

import pytest

from mlprep.core import read_jsonl

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, 'OMP_NUM_THREADS': '1', 'MLPREP_PROGRESS': '0'}


def datagen_cmd(output, *extra):
    return [sys.executable, '-m', 'mlprep.cli', 'datagen', '--model_theta', 'tiny:theta', '--model_t', 'tiny:target',
            '--dataset', 'demo:deepscaler', '--output', str(output), '--save_diagnostics', '--max_new_tokens', '24',
            '--batch_size', '2', '--device', 'cpu', *map(str, extra)]


def ids(path):
    return [r['sample_idx'] for _, r in read_jsonl(path)]


@pytest.fixture(scope='module', autouse=True)
def tiny_pair_ready():
    from mlprep.data.tiny import tiny_pair
    tiny_pair()          # trained once and cached under outputs/, so the timed parts below are generation only


def test_kill_and_resume(tmp_path):
    out, n = tmp_path / 'gen.jsonl', 30
    p = subprocess.Popen(datagen_cmd(out, '--num_samples', n), env=ENV, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while time.time() < deadline and (not out.exists() or len(out.read_bytes().splitlines()) < 6):
        assert p.poll() is None, p.stderr.read().decode()[-2000:]
        time.sleep(0.05)
    os.kill(p.pid, signal.SIGKILL); p.wait()
    first = ids(out)
    assert 6 <= len(first) < n, 'the kill must land mid-run'
    r = subprocess.run(datagen_cmd(out, '--num_samples', n), env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(out.with_name('gen.summary.json').read_text())
    assert summary['resumed'] >= len(first) - 2           # a sample cut between its two lines is regenerated
    data, diag = ids(out), ids(out.with_name('gen.diagnostics.jsonl'))
    assert sorted(data) == list(range(n)) and sorted(diag) == list(range(n)), 'every sample exactly once'
    assert data == diag, 'data and diagnostics stay aligned line by line'
    for _, rec in read_jsonl(out):
        assert [m['role'] for m in rec['messages']] == ['user', 'assistant']


def test_shards_in_parallel_then_merge(tmp_path):
    out, n = tmp_path / 'gen.jsonl', 9
    procs = [subprocess.Popen(datagen_cmd(out, '--num_samples', n, '--num_shards', 2, '--shard_index', k), env=ENV, cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for k in range(2)]
    for p in procs: assert p.wait(timeout=600) == 0, p.stderr.read().decode()[-2000:]
    assert ids(tmp_path / 'gen.shard-0-of-2.jsonl') == [0, 2, 4, 6, 8]
    r = subprocess.run([sys.executable, '-m', 'mlprep.cli', 'merge', str(out), '--num_shards', '2'], env=ENV, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert ids(out) == list(range(n)) and ids(tmp_path / 'gen.diagnostics.jsonl') == list(range(n))
    # a missing shard line is an error naming the sample
    lines = (tmp_path / 'gen.shard-1-of-2.jsonl').read_text().splitlines()
    (tmp_path / 'gen.shard-1-of-2.jsonl').write_text('\n'.join(lines[:-1]) + '\n')
    r = subprocess.run([sys.executable, '-m', 'mlprep.cli', 'merge', str(out), '--num_shards', '2'], env=ENV, capture_output=True, text=True)
    assert r.returncode == 2 and 'sample_idx [7]' in r.stderr


def test_bad_and_long_prompts_are_counted_not_fatal(tmp_path):
    src = tmp_path / 'prompts.jsonl'
    good = json.dumps({'problem': 'What is 2 + 3?', 'solution': '5', 'answer': '5'})
    long = json.dumps({'problem': 'Add these numbers: ' + ' + '.join(['7'] * 300), 'solution': '.', 'answer': '2100'})
    src.write_text('\n'.join([good, '{not json', json.dumps({'problem': '', 'answer': '1'}), long, good]) + '\n')
    out = tmp_path / 'gen.jsonl'
    r = subprocess.run([sys.executable, '-m', 'mlprep.cli', 'datagen', '--model_theta', 'tiny:theta', '--model_t', 'tiny:target',
                        '--dataset', str(src), '--output', str(out), '--max_new_tokens', '8', '--max_prompt_tokens', '64',
                        '--long_prompts', 'skip', '--device', 'cpu'], env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    s = json.loads(out.with_name('gen.summary.json').read_text())
    assert s['bad_rows'] == 2 and s['long_prompts'] == 1 and s['generated'] == 2
    assert ids(out) == [0, 2]
