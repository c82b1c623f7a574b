"""`mlprep datagen` end to end, with real processes: kill -9 and resume to the same data, shards and honest merges,
one writer per output, settings guarded, limits and bad input refused before anything is written."""
import json, os, signal, subprocess, sys, time
from types import SimpleNamespace
from pathlib import Path

import pytest

from mlprep.core import read_jsonl

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, 'OMP_NUM_THREADS': '1', 'MLPREP_PROGRESS': '0'}


def datagen_cmd(output, *extra):
    return [sys.executable, '-m', 'mlprep.cli', 'datagen', '--model_theta', 'tiny:theta', '--model_t', 'tiny:target',
            '--dataset', 'demo:deepscaler', '--output', str(output), '--save_diagnostics', '--max_new_tokens', '24',
            '--batch_size', '2', '--device', 'cpu', *map(str, extra)]

def mlprep(*args, timeout=600):
    "`mlprep ARGS` in a separate process (for kills and locks held by other processes)."
    return subprocess.run([sys.executable, '-m', 'mlprep.cli', *map(str, args)], env=ENV, cwd=ROOT, capture_output=True, text=True, timeout=timeout)

def cli(*args):
    "`mlprep ARGS` in this process (no interpreter start-up): exit code, stdout, stderr and the log."
    import contextlib, io, logging
    from mlprep.cli import main
    out, err, log = io.StringIO(), io.StringIO(), io.StringIO()
    handler = logging.StreamHandler(log); logging.getLogger('mlprep').addHandler(handler)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err): code = main([str(a) for a in args])
    finally: logging.getLogger('mlprep').removeHandler(handler)
    return SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue(), log=log.getvalue())

def ids(path):
    return [r['sample_idx'] for _, r in read_jsonl(path)]

def records(path):
    return sorted((r for _, r in read_jsonl(path)), key=lambda r: r['sample_idx'])

def wait_for_lines(p, path, n, deadline=240):
    end = time.time() + deadline
    while time.time() < end and (not path.exists() or len(path.read_bytes().splitlines()) < n):
        assert p.poll() is None, p.stderr.read().decode()[-2000:]
        time.sleep(0.05)


@pytest.fixture(scope='module', autouse=True)
def tiny_pair_ready():
    import torch
    from mlprep.data.tiny import tiny_pair
    torch.set_num_threads(1)
    tiny_pair()          # trained once and cached under outputs/, so the timed parts below are generation only


def test_kill_and_resume_equals_an_uninterrupted_run(tmp_path):
    "SIGKILL mid-run, resume: every sample once, data and diagnostics aligned, and the same data as a run never killed."
    out, n = tmp_path / 'gen.jsonl', 24
    p = subprocess.Popen(datagen_cmd(out, '--num_samples', n), env=ENV, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_for_lines(p, out, 5)
    os.kill(p.pid, signal.SIGKILL); p.wait()
    first = ids(out)
    assert 5 <= len(first) < n, 'the kill must land mid-run'
    r = cli(*datagen_cmd(out, '--num_samples', n)[3:])
    assert r.returncode == 0, r.stderr[-3000:]              # the kill released the lock
    summary = json.loads(out.with_name('gen.summary.json').read_text())
    assert summary['resumed'] >= len(first) - 2
    data, diag = ids(out), ids(out.with_name('gen.diagnostics.jsonl'))
    assert sorted(data) == list(range(n)) and data == diag, 'every sample exactly once, files aligned'
    ref = tmp_path / 'ref.jsonl'
    r = cli(*datagen_cmd(ref, '--num_samples', n)[3:])
    assert r.returncode == 0, r.stderr[-3000:]
    assert records(out) == records(ref), 'a kill changes nothing in the result'
    assert records(out.with_name('gen.diagnostics.jsonl')) == records(ref.with_name('ref.diagnostics.jsonl'))


def test_one_writer_per_output_named_and_released_by_a_kill(tmp_path):
    "A live holder of the output's lock makes a second run fail at once, naming it; SIGKILL of the holder frees the output."
    out = tmp_path / 'gen.jsonl'
    holder = subprocess.Popen([sys.executable, '-c', 'import sys, time\nfrom mlprep.runs import output_lock\n'
                               f'with output_lock({str(out)!r}) as s:\n    s["started"] = True; print("locked", flush=True); time.sleep(120)'],
                              env=ENV, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == 'locked'
    r = cli(*datagen_cmd(out, '--num_samples', 2, '--max_new_tokens', 4)[3:])
    assert r.returncode == 2 and f'pid {holder.pid}' in r.stderr and 'being written by' in r.stderr, r.stderr
    assert not out.exists()
    os.kill(holder.pid, signal.SIGKILL); holder.wait()
    r = cli(*datagen_cmd(out, '--num_samples', 2, '--max_new_tokens', 4)[3:])
    assert r.returncode == 0, r.stderr[-2000:]
    assert ids(out) == [0, 1]


def test_rerun_with_other_settings_is_refused_and_diagnostics_stay_complete(tmp_path):
    out = tmp_path / 'gen.jsonl'
    assert cli(*datagen_cmd(out, '--num_samples', 2, '--max_new_tokens', 4)[3:]).returncode == 0
    r = cli(*datagen_cmd(out, '--num_samples', 2, '--max_new_tokens', 4, '--temperature', 0.5)[3:])
    assert r.returncode == 2 and 'temperature: 1.0 → 0.5' in r.stderr and 'another --output' in r.stderr, r.stderr
    # a kill cut the last sample from both files; the rerun without --save_diagnostics still writes its diagnostics
    for f in (out, out.with_name('gen.diagnostics.jsonl')): f.write_text(f.read_text().splitlines(True)[0])
    args = [a for a in datagen_cmd(out, '--num_samples', 2, '--max_new_tokens', 4)[3:] if a != '--save_diagnostics']
    r = cli(*args)
    assert r.returncode == 0, r.stderr
    assert ids(out) == ids(out.with_name('gen.diagnostics.jsonl')) == [0, 1]


def test_shards_killed_then_merge_is_exact_and_refuses_bad_num_shards(tmp_path):
    out, n = tmp_path / 'gen.jsonl', 8
    procs = [subprocess.Popen(datagen_cmd(out, '--num_samples', n, '--num_shards', 2, '--shard_index', k), env=ENV, cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for k in range(2)]
    wait_for_lines(procs[0], tmp_path / 'gen.shard-0-of-2.jsonl', 1)
    for p in procs: os.kill(p.pid, signal.SIGKILL); p.wait()
    have = sum(len(ids(f)) for f in tmp_path.glob('gen.shard-*-of-2.jsonl'))
    r = cli('merge', out, '--num_shards', 2)
    assert r.returncode == 2 and f'{n - have} sample(s) missing' in r.stderr, (have, r.stderr)
    assert not out.exists(), 'a failed merge writes nothing'
    for bad in (0, -1, 3):
        r = cli('merge', out, '--num_shards', bad)
        assert r.returncode == 2 and 'num_shards' in r.stderr, r.stderr
    for k in range(2):   # finish both shards, then the merge succeeds
        r = cli(*datagen_cmd(out, '--num_samples', n, '--num_shards', 2, '--shard_index', k)[3:])
        assert r.returncode == 0, r.stderr[-2000:]
    r = cli('merge', out, '--num_shards', 2)
    assert r.returncode == 0, r.stderr
    assert ids(out) == list(range(n)) and ids(tmp_path / 'gen.diagnostics.jsonl') == list(range(n))


def test_bad_and_long_prompts_skip_is_planned_and_merges(tmp_path):
    src = tmp_path / 'prompts.jsonl'
    good = json.dumps({'problem': 'What is 2 + 3?', 'solution': '5', 'answer': '5'})
    long = json.dumps({'problem': 'Add these numbers: ' + ' + '.join(['7'] * 300), 'solution': '.', 'answer': '2100'})
    src.write_text('\n'.join([good, '{not json', json.dumps({'problem': '', 'answer': '1'}), long, good]) + '\n')
    out = tmp_path / 'gen.jsonl'
    base = ['--model_theta', 'tiny:theta', '--model_t', 'tiny:target', '--dataset', src, '--output', out, '--max_new_tokens', 8,
            '--max_prompt_tokens', 64, '--device', 'cpu']
    r = cli('datagen', *base, '--long_prompts', 'refuse')
    assert r.returncode == 2 and 'sample_idx 1: the prompt has' in r.stderr, r.stderr
    assert list(tmp_path.iterdir()) == [src], 'an error before generation leaves no files'
    for k in range(2):
        r = cli('datagen', *base, '--long_prompts', 'skip', '--num_shards', 2, '--shard_index', k)
        assert r.returncode == 0, r.stderr[-3000:]
    s = json.loads((tmp_path / 'gen.shard-1-of-2.summary.json').read_text())
    assert s['bad_rows'] == 2 and s['skipped'] == 1 and s['generated'] == 0
    r = cli('merge', out, '--num_shards', 2)
    assert r.returncode == 0 and json.loads(r.stdout)['skipped'] == 1, r.stderr
    assert ids(out) == [0, 2]


def test_output_equal_to_dataset_or_in_its_folder_is_refused_before_writing(tmp_path):
    ds = tmp_path / 'ds'; ds.mkdir()
    f = ds / 'prompts.jsonl'; f.write_text(json.dumps({'problem': 'What is 1 + 1?', 'answer': '2'}) + '\n')
    before = f.read_bytes()
    r = cli('datagen', '--dataset', f, '--output', f, '--device', 'cpu')
    assert r.returncode == 2 and 'would overwrite the dataset' in r.stderr, r.stderr
    r = cli('datagen', '--dataset', ds, '--output', ds / 'gen.jsonl', '--device', 'cpu')
    assert r.returncode == 2 and 'inside the dataset folder' in r.stderr, r.stderr
    assert f.read_bytes() == before and sorted(p.name for p in ds.iterdir()) == ['prompts.jsonl']


def test_model_t_defaults_to_model_theta_and_field_map_on_the_command_line(tmp_path):
    src = tmp_path / 'q.jsonl'
    src.write_text(json.dumps({'question': 'What is 3 + 4?', 'final': '7'}) + '\n')
    out = tmp_path / 'gen.jsonl'
    r = cli('datagen', '--model_theta', 'tiny:theta', '--dataset', src, '--dataset_adapter', 'generic', '--field_map',
               'prompt=question,answer=final', '--output', out, '--max_new_tokens', 4, '--device', 'cpu')
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'π_θ = tiny:theta, π_t = tiny:theta (model_t not given' in r.log
    settings = json.loads(out.with_name('gen.settings.json').read_text())['settings']
    assert settings['model_t'] == 'tiny:theta' and settings['field_map'] == {'prompt': 'question', 'answer': 'final'}
    assert ids(out) == [0]


def test_analyze_refuses_what_is_not_diagnostics(tmp_path):
    (tmp_path / 'empty.jsonl').write_text('')
    (tmp_path / 'data.jsonl').write_text(json.dumps({'sample_idx': 0, 'messages': []}) + '\n')
    (tmp_path / 'folder').mkdir()
    for arg, msg in (('empty.jsonl', 'no diagnostics records'), ('data.jsonl', 'no diagnostics fields'),
                     ('folder', 'no *.diagnostics.jsonl files')):
        r = cli('analyze', tmp_path / arg, '--output_dir', tmp_path / 'out')
        assert r.returncode == 2 and msg in r.stderr and r.stderr.strip().splitlines()[-1].startswith('mlprep: error:'), r.stderr
    assert not (tmp_path / 'out').exists()


def test_stage_parameters_are_checked_before_the_notebook_runs(tmp_path):
    "`mlprep run datagen -p num_samples 0` and a diagnostics stage on a data file fail in the parameter check, in one line."
    r = cli('run', 'datagen', '-p', 'num_samples', '0', '--output_dir', tmp_path / 'run')
    assert r.returncode == 2 and 'num_samples=0 must be at least 1' in r.stderr, r.stderr
    (tmp_path / 'data.jsonl').write_text(json.dumps({'sample_idx': 0, 'messages': []}) + '\n')
    r = cli('run', 'diagnostics', '-p', 'diagnostics', tmp_path / 'data.jsonl', '--output_dir', tmp_path / 'run')
    assert r.returncode == 2 and 'no diagnostics fields' in r.stderr, r.stderr
    assert not (tmp_path / 'run').exists()


def test_output_that_is_a_folder_is_refused(tmp_path):
    r = cli('datagen', '--output', tmp_path, '--device', 'cpu')
    assert r.returncode == 2 and 'is a folder or a device' in r.stderr, r.stderr
    assert list(tmp_path.iterdir()) == []


def test_device_without_cuda_and_a_missing_dataset_are_one_line_errors_leaving_nothing(tmp_path):
    import torch
    out = tmp_path / 'sub' / 'gen.jsonl'
    if not torch.cuda.is_available():
        r = cli('datagen', '--output', out, '--device', 'cuda', '--num_samples', 2)
        assert r.returncode == 2 and "device 'cuda'" in r.stderr, r.stderr
    r = cli('datagen', '--output', out, '--dataset', tmp_path / 'nosuch.jsonl', '--device', 'cpu')
    assert r.returncode == 2 and 'nosuch.jsonl' in r.stderr, r.stderr
    assert list(tmp_path.iterdir()) == [], 'an error before generation leaves no files or folders'


K_PROMPTS, K = 4, 3

@pytest.fixture(scope='module')
def k_reference(tmp_path_factory):
    "An uninterrupted run with 3 responses per prompt on 4 demo prompts, and the demo dataset's verified answers."
    from mlprep.data.adapters import load_records
    from mlprep.data.resolve import resolve_dataset
    ref = tmp_path_factory.mktemp('k') / 'ref.jsonl'
    r = cli(*datagen_cmd(ref, '--num_samples', K_PROMPTS, '--num_samples_per_prompt', K, '--max_new_tokens', 16)[3:])
    assert r.returncode == 0, r.stderr[-3000:]
    recs = load_records(resolve_dataset('demo:deepscaler'), adapter='deepscaler', kind='prompt', num_samples=K_PROMPTS, seed=42).records
    return ref, [x['answer'] for x in recs]


@pytest.mark.slow
def test_k_responses_per_prompt_carry_their_prompt_and_answer_and_resume_after_a_kill(tmp_path, k_reference):
    "K=3: three different responses per prompt, each record naming its prompt, response and verified answer; kill -9 and resume equal the uninterrupted run; another K is refused."
    ref, answers = k_reference
    rows = records(ref)
    assert [r['sample_idx'] for r in rows] == list(range(K_PROMPTS * K))
    assert [(r['prompt_idx'], r['response_idx']) for r in rows] == [(p, k) for p in range(K_PROMPTS) for k in range(K)]
    assert [r['answer'] for r in rows] == [a for a in answers for _ in range(K)] and all(answers)
    for p in range(K_PROMPTS):
        group = rows[p * K:(p + 1) * K]
        assert len({r['messages'][0]['content'] for r in group}) == 1, 'one prompt'
        assert len({r['messages'][1]['content'] for r in group}) == K, 'K different responses'
    diag = records(ref.with_name('ref.diagnostics.jsonl'))
    assert [(d['prompt_idx'], d['response_idx']) for d in diag] == [(r['prompt_idx'], r['response_idx']) for r in rows]
    out = tmp_path / 'gen.jsonl'
    args = datagen_cmd(out, '--num_samples', K_PROMPTS, '--num_samples_per_prompt', K, '--max_new_tokens', 16)
    p = subprocess.Popen(args, env=ENV, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    wait_for_lines(p, out, 3)
    os.kill(p.pid, signal.SIGKILL); p.wait()
    assert 3 <= len(ids(out)) < K_PROMPTS * K, 'the kill must land mid-run'
    r = cli(*args[3:])
    assert r.returncode == 0, r.stderr[-3000:]
    assert records(out) == rows and records(out.with_name('gen.diagnostics.jsonl')) == diag
    r = cli(*datagen_cmd(out, '--num_samples', K_PROMPTS, '--num_samples_per_prompt', 2, '--max_new_tokens', 16)[3:])
    assert r.returncode == 2 and 'num_samples_per_prompt: 3 → 2' in r.stderr, r.stderr
    r = cli(*datagen_cmd(out, '--num_samples', K_PROMPTS, '--max_new_tokens', 16)[3:])     # K back to its default: refused too
    assert r.returncode == 2 and 'num_samples_per_prompt: 3 → 1' in r.stderr, r.stderr


def test_k_responses_per_prompt_in_shards_merge_to_the_unsharded_run(tmp_path, k_reference):
    "Shards split by prompt (a prompt's K responses stay together); a missing shard is named; the merge equals one run."
    ref, _ = k_reference
    out = tmp_path / 'gen.jsonl'
    shard = lambda k: datagen_cmd(out, '--num_samples', K_PROMPTS, '--num_samples_per_prompt', K, '--max_new_tokens', 16,
                                  '--num_shards', 2, '--shard_index', k)[3:]
    assert cli(*shard(0)).returncode == 0
    assert {r['prompt_idx'] for r in records(tmp_path / 'gen.shard-0-of-2.jsonl')} == {0, 2}
    r = cli('merge', out, '--num_shards', 2)
    assert r.returncode == 2 and f'{2 * K} sample(s) missing' in r.stderr and 'never started' in r.stderr, r.stderr
    assert cli(*shard(1)).returncode == 0
    r = cli('merge', out, '--num_shards', 2)
    assert r.returncode == 0 and json.loads(r.stdout)['data']['samples'] == K_PROMPTS * K, r.stderr
    assert (tmp_path / 'gen.jsonl').read_text() == ref.read_text()
    # other batch neighbours pad differently, so the diagnostics agree up to float rounding
    merged, whole = records(tmp_path / 'gen.diagnostics.jsonl'), records(ref.with_name('ref.diagnostics.jsonl'))
    assert [(d['sample_idx'], d['prompt_idx'], d['response_idx']) for d in merged] == [(d['sample_idx'], d['prompt_idx'], d['response_idx']) for d in whole]
    assert all(m['alpha_mean'] == pytest.approx(w['alpha_mean'], abs=1e-4) for m, w in zip(merged, whole))
