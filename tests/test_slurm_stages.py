"""`mlprep slurm` against a real single-node SLURM cluster: a stage, a two-task sweep, and a requeue."""
import json, os, subprocess, sys
from pathlib import Path

import pytest

from tests.slurm.fixtures import slurm_cluster  # noqa: F401  (the fixture)

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("slurm")]   # one cluster: its tests share one worker


def mlprep(*args):
    r = subprocess.run([sys.executable, '-m', 'mlprep.cli', *map(str, args)], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ}, timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout


def job_id(stdout):
    return stdout.split('submitted job ')[1].split()[0]


def test_dry_run_prints_the_script(tmp_path):
    out = mlprep('slurm', 'data', '-p', 'num_samples', '10,20', '--nodes', '1', '--cpus_per_task', '1', '--mem', '2G',
                 '--time', '00:10:00', '--partition', 'debug', '--output_dir', tmp_path / 'dry', '--dry_run')
    assert '#SBATCH --array=0-1' in out and '#SBATCH --mem=2G' in out and 'nothing written or submitted' in out
    assert not (tmp_path / 'dry').exists(), 'a dry run only prints'


def test_stage_and_sweep_on_a_real_cluster(slurm_cluster, tmp_path):
    one = tmp_path / 'one'
    jid = job_id(mlprep('slurm', 'data', '-p', 'num_samples', '12', '--cpus_per_task', '1', '--mem', '2G',
                        '--time', '00:10:00', '--output_dir', one))
    sweep = tmp_path / 'sweep'
    aid = job_id(mlprep('slurm', 'data', '-p', 'num_samples', '5,9', '--cpus_per_task', '1', '--mem', '2G',
                        '--time', '00:10:00', '--output_dir', sweep))
    states = slurm_cluster.wait([jid, aid], timeout=300)
    assert all(s == 'COMPLETED' for s in states.values()), (states, slurm_cluster.log_tails())
    assert len(states) == 3
    assert json.loads((one / 'run.json').read_text())['status'] == 'completed'
    assert json.loads((one / 'summary.json').read_text())['records'] == 12
    assert (one / 'data.ipynb').exists() and list(one.glob('slurm-*.out'))
    index = json.loads((sweep / 'sweep.json').read_text())
    assert index['job_id'] == aid and [t['params']['num_samples'] for t in index['tasks']] == ['5', '9']
    for i, n in enumerate([5, 9]):
        task = sweep / f'task-{i}'
        run = json.loads((task / 'run.json').read_text())
        assert run['status'] == 'completed' and run['slurm_array_task_id'] == str(i)
        assert json.loads((task / 'summary.json').read_text())['records'] == n

    # a requeued job reruns in the same folder: the earlier report is kept, records are not doubled
    slurm_cluster.run('scontrol', 'requeue', jid)
    states = slurm_cluster.wait([jid], timeout=300)
    assert states[jid] == 'COMPLETED'
    assert slurm_cluster.jobs([jid])[jid].get('Restarts') == '1'
    assert (one / 'data.attempt-1.ipynb').exists()
    run = json.loads((one / 'run.json').read_text())
    assert run['status'] == 'completed' and run['slurm_restart_count'] == '1'
    assert sum(1 for _ in open(one / 'records.jsonl')) == 12
