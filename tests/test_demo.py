"""The README's main command, `mlprep demo`: a pipeline of steps the capabilities contribute, each saying what it made."""
import json, math, re
from pathlib import Path

from tests.test_stages import mlprep


def test_demo_sampling_step_with_two_methods_says_what_it_made(tmp_path):
    r = mlprep('demo', '--only', 'sampling', '--output_dir', tmp_path, '--methods', 'fixed,kl_symmetry', '--num_samples', '4',
               '--max_new_tokens', '8', '--no_progress', timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'What was made, and where:' in r.stdout
    data = sorted(tmp_path.glob('sampling/**/generated.jsonl'))
    assert len(data) == 2, data
    for f in data:
        rows = [json.loads(line) for line in f.read_text().splitlines()]
        assert sorted(row['sample_idx'] for row in rows) == [0, 1, 2, 3]
        assert [m['role'] for m in rows[0]['messages']] == ['user', 'assistant']
    report = Path(re.search(r'Open the report: (\S+)', r.stdout).group(1))
    assert report.exists() and report.suffix == '.ipynb' and str(report).startswith(str(tmp_path))
    assert 'data: tiny pair: theta (policy)' in r.stdout      # the data step always runs first


def test_demo_refuses_unknown_steps_and_options(tmp_path):
    r = mlprep('demo', '--only', 'nosuch', '--output_dir', tmp_path)
    assert r.returncode == 2 and 'no such demo step' in r.stderr
    r = mlprep('demo', '--only', 'sampling', '--output_dir', tmp_path, '--methodz', 'fixed')
    assert r.returncode == 2 and 'no step takes --methodz' in r.stderr


def test_demo_training_steps_say_what_they_made(tmp_path):
    "The DPO, MateConv and Questions-Gen steps each train for real, print their artifacts, and the last report exists."
    r = mlprep('demo', '--only', 'pref,mateconv,qgen', '--output_dir', tmp_path, '--no_progress', timeout=1200)
    assert r.returncode == 0, r.stderr[-3000:]
    for line in ('pref: dpo: final model', 'mateconv: pretrained MateConv', 'qgen: GRPO adapter', 'qgen: eval report'):
        assert line in r.stdout, (line, r.stdout[-2000:])
    dpo = json.loads((tmp_path/'pref'/'dpo'/'summary.json').read_text())
    assert dpo['steps'] > 0 and dpo['train']['accuracy'] > 0
    pre = json.loads((tmp_path/'mateconv'/'pretrain'/'summary.json').read_text())
    assert pre['steps'] == 150 and pre['eval_loss'] < 0.6 * math.log(6400)   # well below a uniform guess over the vocabulary
    assert (tmp_path/'qgen'/'export'/'merged_16bit').is_dir()
    report = Path(re.search(r'Open the report: (\S+)', r.stdout).group(1))
    assert report.exists() and str(report).startswith(str(tmp_path))
