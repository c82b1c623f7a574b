"""The README's main command, `mlprep demo`, end to end: datagen with two α methods and the comparison report."""
import json

from tests.test_stages import mlprep


def test_demo_runs_the_pipeline_and_says_what_it_made(tmp_path):
    r = mlprep('demo', '--output_dir', tmp_path, '--methods', 'fixed,kl_symmetry', '--num_samples', '4',
               '--max_new_tokens', '8', timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'What was made, and where:' in r.stdout
    for method in ('fixed', 'kl_symmetry'):
        rows = [json.loads(line) for line in (tmp_path / f'datagen-{method}' / 'generated.jsonl').read_text().splitlines()]
        assert sorted(row['sample_idx'] for row in rows) == [0, 1, 2, 3]
        assert [m['role'] for m in rows[0]['messages']] == ['user', 'assistant']
        assert f'  {method}: ess_ratio in [0.9, 1.1] ' in r.stdout  # the expected-range shares, one line per method
    report = tmp_path / 'diagnostics' / 'diagnostics.ipynb'
    assert report.exists() and f'Open the report: {report}' in r.stdout
