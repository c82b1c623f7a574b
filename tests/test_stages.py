"""The `mlprep` command end to end: stages run through papermill into run folders, bad input fails early."""
import json, os, subprocess, sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MLPREP = [sys.executable, '-m', 'mlprep.cli']


def mlprep(*args, env=None, cwd=ROOT, timeout=300):
    e = {**os.environ, **(env or {})}
    return subprocess.run([*MLPREP, *map(str, args)], capture_output=True, text=True, env=e, cwd=cwd, timeout=timeout)


def test_stage_notebooks_keep_parameters_tag_and_never_export():
    nbs = sorted((ROOT / 'nbs' / 'stages').glob('*.ipynb'))
    assert nbs, 'no stage notebooks found'
    for nb in nbs:
        cells = json.loads(nb.read_text())['cells']
        assert any('parameters' in c.get('metadata', {}).get('tags', []) for c in cells), f'{nb}: no cell tagged parameters'
        assert not any('nbdev_export' in ''.join(c['source']) for c in cells), f'{nb}: calls nbdev_export'
        assert not any(''.join(c['source']).lstrip().startswith('#| export') for c in cells), f'{nb}: defines library code'


def test_every_registered_stage_has_a_notebook_whose_parameters_its_config_knows():
    from mlprep.stages import check_parameters_cell, get_stage, load_jobs
    jobs = load_jobs()
    assert {'data', 'datagen', 'diagnostics'} <= set(jobs)
    for name, st in jobs.items():
        if st.notebook is None: continue
        assert st.notebook_path.exists(), f'stage {name}: {st.notebook_path} missing'
        check_parameters_cell(get_stage(name))            # raises on a parameters key the config does not have


@pytest.mark.slow
def test_every_registry_row_names_code_that_imports():
    "A typo in a row's 'module:function' string fails here, not when someone runs that job."
    from mlprep.config import Config
    from mlprep.stages import DEMO_STEPS, JOB_GROUPS, import_target, load_jobs
    assert JOB_GROUPS[:5] == ('data', 'sampling', 'pref', 'mateconv', 'qgen'), JOB_GROUPS   # the order of mlprep --help
    jobs, bad = load_jobs(), []
    assert set(JOB_GROUPS) == {st.group for st in jobs.values()} | set(DEMO_STEPS), 'a capability with a jobs module but no rows'
    def check(what, target, want=callable):
        try: obj = import_target(target)
        except (ImportError, AttributeError) as e: return bad.append(f'{what} = {target!r}: {type(e).__name__}: {e}')
        if not want(obj): bad.append(f'{what} = {target!r} is not what it should be: {obj!r}')
    for name, st in jobs.items():
        if st.config is not None or not st.cli:          # a row with its own argv parser (`merge`) may have no config
            check(f'{name}.config', st.config, lambda c: isinstance(c, type) and issubclass(c, Config))
        for attr in ('run', 'cli', 'entry'):
            if getattr(st, attr): check(f'{name}.{attr}', getattr(st, attr))
        if not (st.run or st.cli): bad.append(f'{name}: neither run nor cli')
        if st.distributed and not st.entry: bad.append(f'{name}: distributed without an entry')
        if st.notebook and not st.notebook_path.exists(): bad.append(f'{name}.notebook: {st.notebook_path} missing')
    for group, steps in DEMO_STEPS.items():
        for step in steps: check(f'demo step of {group}', step['run'] if isinstance(step, dict) else step)
    assert not bad, '\n'.join(bad)


def test_parameters_cell_check_fails_on_an_unknown_key(tmp_path):
    import nbformat
    from mlprep.config import ConfigError
    from mlprep.data.prepare import DataConfig
    from mlprep.stages import Stage, check_parameters_cell
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("num_samples = 3\nnum_sampels = 4\noutput_dir = ''", metadata={'tags': ['parameters']})]
    nbformat.write(nb, tmp_path / 'x.ipynb')
    with pytest.raises(ConfigError, match='num_sampels'):
        check_parameters_cell(Stage('x', DataConfig, tmp_path / 'x.ipynb', 'x'))


def test_stages_and_help():
    r = mlprep('stages')
    assert r.returncode == 0 and 'data' in r.stdout
    r = mlprep('run', 'data', '--help')
    assert r.returncode == 0 and 'dataset_adapter' in r.stdout and 'num_samples' in r.stdout


def test_bad_parameter_fails_before_the_kernel_starts(tmp_path):
    r = mlprep('run', 'data', '-p', 'num_sample', '5', '--output_dir', tmp_path / 'run')
    assert r.returncode == 2
    assert "unknown key 'num_sample'" in r.stderr and "did you mean 'num_samples'?" in r.stderr
    assert 'valid keys:' in r.stderr
    assert not (tmp_path / 'run').exists(), 'nothing may be created for a bad parameter'
    r = mlprep('run', 'data', '-p', 'kind', 'pairs', '--output_dir', tmp_path / 'run')
    assert r.returncode == 2 and "kind='pairs' is not one of" in r.stderr


def test_run_data_stage_writes_a_report_and_keeps_secrets_out(tmp_path):
    secret = 'sk-mlprep-test-0123456789abcdef'
    run = tmp_path / 'run'
    r = mlprep('run', 'data', '-p', 'num_samples', '30', '-p', 'dataset', 'demo:hh_rlhf', '-p', 'dataset_adapter', 'hh_rlhf',
               '-p', 'kind', 'pair', '--output_dir', run, env={'OPENAI_API_KEY': secret, 'HF_TOKEN': secret})
    assert r.returncode == 0, r.stderr[-3000:]
    for f in ['data.ipynb', 'config.yaml', 'run.json', 'log.txt', 'records.jsonl', 'summary.json', 'lengths.png']:
        assert (run / f).exists(), f
    assert json.loads((run / 'run.json').read_text())['status'] == 'completed'
    assert json.loads((run / 'summary.json').read_text())['records'] == 30
    nb = json.loads((run / 'data.ipynb').read_text())
    assert any(o.get('output_type') == 'display_data' and 'image/png' in o.get('data', {})
               for c in nb['cells'] for o in c.get('outputs', [])), 'the report shows the length plot'
    for f in run.rglob('*'):
        if f.is_file(): assert secret.encode() not in f.read_bytes(), f'secret leaked into {f}'


def test_failing_stage_names_the_cell_and_the_notebook(tmp_path):
    run = tmp_path / 'run'
    bad = tmp_path / 'bad.jsonl'
    bad.write_text('{"question": "no problem field"}\n')
    r = mlprep('run', 'data', '-p', 'dataset', bad, '--output_dir', run)
    assert r.returncode == 1
    assert 'failed in cell' in r.stderr and str(run / 'data.ipynb') in r.stderr
    assert json.loads((run / 'run.json').read_text())['status'] == 'failed'


def test_local_sweep_runs_each_point(tmp_path):
    r = mlprep('run', 'data', '-p', 'num_samples', '5,7', '--output_dir', tmp_path / 'sweep', '--no_progress')
    assert r.returncode == 0, r.stderr[-2000:]
    counts = [json.loads((tmp_path / 'sweep' / f'task-{i}' / 'summary.json').read_text())['records'] for i in (0, 1)]
    assert counts == [5, 7]
