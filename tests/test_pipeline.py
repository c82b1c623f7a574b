"""`mlprep pipeline` on Snakemake, locally: the shipped pipeline (pipelines/rl_data.yaml) runs every step once in data
order; a rerun runs nothing; a new β runs only dpo and math_eval for it; a step killed with SIGKILL continues from its
checkpoint; bad YAML and a failing step are one clear message each. One run of the pipeline serves every assertion."""
import fcntl, json, os, re, signal, subprocess, sys, time
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / 'pipelines' / 'rl_data.yaml'
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group('pipeline')]


def mlprep(*args, timeout=1200, **kw):
    return subprocess.run([sys.executable, '-m', 'mlprep.cli', *map(str, args)], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, 'OMP_NUM_THREADS': '1'}, timeout=timeout, **kw)


def runs(out: Path) -> dict[str, dict]:
    "{step folder: run.json} of every step run in a pipeline's run folder."
    return {str(p.parent.relative_to(out)): json.loads(p.read_text()) for p in sorted(out.rglob('run.json'))}


@pytest.fixture(scope='module')
def shipped(tmp_path_factory):
    "The shipped pipeline, run once into a temp run folder: (run folder, stdout+stderr, run.json of each step)."
    out = tmp_path_factory.mktemp('pipe') / 'rl_data'
    r = mlprep('pipeline', 'run', SHIPPED, '--output_dir', out)
    assert r.returncode == 0, (r.stdout + r.stderr)[-5000:]
    return out, r.stdout + r.stderr, runs(out)


def test_every_step_ran_once_in_data_order(shipped):
    out, log, first = shipped
    assert set(first) == {'pair', 'datagen', 'pairs', 'dpo/beta-0.1', 'dpo/beta-0.5', 'math_eval/beta-0.1', 'math_eval/beta-0.5'}
    assert all(r['status'] == 'completed' for r in first.values()), first
    assert not list(out.rglob('*.attempt-*.ipynb')), 'a step ran twice'
    for d in first: assert (out / d / 'done.json').exists() and (out / d / f"{first[d]['stage']}.ipynb").exists()
    after = {'datagen': ['pair'], 'pairs': ['datagen'], 'dpo/beta-0.1': ['pairs'], 'dpo/beta-0.5': ['pairs'],
             'math_eval/beta-0.1': ['dpo/beta-0.1'], 'math_eval/beta-0.5': ['dpo/beta-0.5']}
    for d, ups in after.items():
        for u in ups: assert first[d]['started'] >= first[u]['finished'], (d, u)
    res = json.loads((out / 'math_eval/beta-0.1/math_eval.json').read_text())
    assert res, 'math_eval wrote no results'
    assert 'pipeline rl_data' in log and 'done' in log


def test_dpo_learns_from_the_checked_pairs(shipped):
    "The learning proof: DPO's implicit-reward accuracy on held-out pairs (prompts it did not train on) is well above 0.5."
    out, _, _ = shipped
    report = json.loads((out / 'pairs' / 'pairs_report.json').read_text())
    assert report, 'pairs wrote no report'
    for beta in ('0.1', '0.5'):
        ev = json.loads((out / f'dpo/beta-{beta}' / 'summary.json').read_text())['eval']
        # measured 0.76-0.83 over 3 seeds on 68 held-out pairs; 0.6 is ~3 binomial sd above chance
        assert ev['accuracy'] > 0.6 and ev['reward_margin'] > 0, (beta, ev)


def test_rerun_runs_nothing(shipped):
    out, _, first = shipped
    r = mlprep('pipeline', 'run', SHIPPED, '--output_dir', out)
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'Nothing to be done' in r.stdout + r.stderr
    assert runs(out) == first


def test_demo_step_prints_the_accuracy_table(shipped):
    "`mlprep demo --only pipeline` runs `demo_step`: on a finished run it runs nothing and prints each policy's table."
    out, _, first = shipped
    r = subprocess.run([sys.executable, '-c', f'from mlprep.pipeline import demo_step; demo_step({str(out)!r})'],
                       capture_output=True, text=True, cwd=ROOT, env={**os.environ, 'OMP_NUM_THREADS': '1'}, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    for beta in ('0.1', '0.5'): assert f'math_eval (beta={beta}):' in r.stdout, r.stdout
    assert r.stdout.count('| base (') == 2 and '| greedy |' in r.stdout, r.stdout
    assert runs(out) == first


def _lock_free(path: Path) -> bool:
    if not path.exists(): return True
    with open(path) as f:
        try: fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB); return True
        except BlockingIOError: return False


def test_new_beta_reruns_only_dpo_and_math_eval_and_a_killed_step_continues(shipped, tmp_path):
    out, _, first = shipped
    spec = yaml.safe_load(SHIPPED.read_text())
    spec['steps']['dpo']['sweep'] = {'beta': [0.1, 0.3]}
    changed = tmp_path / 'rl_data.yaml'
    changed.write_text(yaml.safe_dump(spec))
    # the run for β 0.3 is killed (the whole process group, SIGKILL) once dpo saved its first checkpoint
    p = subprocess.Popen([sys.executable, '-m', 'mlprep.cli', 'pipeline', 'run', changed, '--output_dir', out], cwd=ROOT,
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                         env={**os.environ, 'OMP_NUM_THREADS': '1'})
    dpo = out / 'dpo/beta-0.3'
    deadline = time.monotonic() + 900
    while not list(dpo.glob('checkpoint-*/COMPLETE')):
        assert p.poll() is None, 'the pipeline ended before dpo saved a checkpoint'
        assert time.monotonic() < deadline, 'no dpo checkpoint'
        time.sleep(0.5)
    os.killpg(p.pid, signal.SIGKILL); p.wait()
    deadline = time.monotonic() + 60                     # an orphaned kernel notices its parent is gone and exits
    while not _lock_free(dpo / 'train.lock'): assert time.monotonic() < deadline; time.sleep(0.5)
    assert not (dpo / 'done.json').exists()

    r = mlprep('pipeline', 'run', changed, '--output_dir', out)
    assert r.returncode == 0, (r.stdout + r.stderr)[-5000:]
    now = runs(out)
    assert {d for d in now if now[d] != first.get(d)} == {'dpo/beta-0.3', 'math_eval/beta-0.3'}
    assert all(now[d]['status'] == 'completed' for d in now)
    assert re.search(r'resuming from checkpoint-\d+', (dpo / 'training.log').read_text() + (dpo / 'log.txt').read_text())


def test_show_draws_the_dag(tmp_path):
    r = mlprep('pipeline', 'show', SHIPPED, '--output_dir', tmp_path / 'show')
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'dpo: dpo; model_name <- pair.theta, dataset <- pairs.pairs; sweep beta in 0.1, 0.5' in r.stdout
    mmd = (tmp_path / 'show' / 'dag.mmd').read_text()
    assert 'flowchart' in mmd and '["math_eval (beta=0.5)"]' in mmd and mmd.count(' --> ') == 10


def test_bad_yaml_is_one_line_naming_file_and_key(tmp_path):
    bad = tmp_path / 'bad.yaml'
    bad.write_text('steps:\n  gen: {job: datagen}\n  dpo: {inputs: {dataset: gen.pairs}}\n')
    r = mlprep('pipeline', 'run', bad, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip() == ("mlprep: error: bad.yaml: steps.dpo.inputs.dataset: step 'gen' (datagen) has no output "
                                "'pairs' (outputs: generated, diagnostics)"), r.stderr


def test_a_failed_step_stops_its_dependents_and_names_its_report(tmp_path):
    f = tmp_path / 'fail.yaml'
    f.write_text('steps:\n  data: {params: {dataset: data/demo/nosuch.jsonl}}\n'
                 '  report: {job: data, inputs: {dataset: data.records}}\n')
    r = mlprep('pipeline', 'run', f, '--output_dir', tmp_path / 'run', timeout=600)
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith('mlprep: pipeline fail: step data failed, report: ') and str(tmp_path / 'run/data/data.ipynb') in last, last
    assert not (tmp_path / 'run' / 'report').exists(), 'a step after the failed one ran'
