"""Self-test of the real single-node SLURM test cluster (tests/slurm/cluster.py).

What `mlprep slurm` and `mlprep pipeline run --slurm` rely on: sbatch batch jobs and job arrays run and finish COMPLETED, jobs see this venv's
python, two 1-CPU jobs run at once, and a --requeue job that is requeued starts again with SLURM_RESTART_COUNT=1, and
sacct reports finished jobs (accounting through slurmdbd).
"""
import socket, sys, textwrap, time
from pathlib import Path
import pytest
from tests.slurm.fixtures import slurm_cluster  # noqa: F401  (also fine if tests/conftest.py registers the plugin)

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("slurm")]   # one cluster: its tests share one worker


def _script(path, body, *directives):
    "Write a bash batch script with #SBATCH directives; return its path."
    lines = ['#!/bin/bash', *[f'#SBATCH {d}' for d in directives], 'set -euo pipefail', textwrap.dedent(body)]
    path.write_text('\n'.join(lines) + '\n')
    return path


def _wait_for(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline: raise TimeoutError(f'{what} not seen after {timeout} s')
        time.sleep(0.2)


def test_batch_job_and_array(slurm_cluster, tmp_path):
    c = slurm_cluster
    one = _script(tmp_path / 'one.sh', f'echo "$SLURM_JOB_ID $(hostname)" > {tmp_path}/one.txt',
                  f'--output={tmp_path}/one-%j.log', '--cpus-per-task=1')
    arr = _script(tmp_path / 'arr.sh', f'echo "task $SLURM_ARRAY_TASK_ID of $SLURM_ARRAY_JOB_ID" > {tmp_path}/task-$SLURM_ARRAY_TASK_ID.txt',
                  '--array=0-1', f'--output={tmp_path}/arr-%A_%a.log', '--cpus-per-task=1')
    job = c.submit(one)
    array = c.submit(arr)
    states = c.wait([job, array], timeout=60)
    assert states == {job: 'COMPLETED', f'{array}_0': 'COMPLETED', f'{array}_1': 'COMPLETED'}, states
    job_id, host = (tmp_path / 'one.txt').read_text().split()
    assert job_id == job
    assert host == socket.gethostname()
    for task in (0, 1):
        assert (tmp_path / f'task-{task}.txt').read_text().strip() == f'task {task} of {array}'


def test_two_jobs_run_at_once(slurm_cluster, tmp_path):
    "Two 1-CPU jobs must overlap in time (the stage machinery runs array tasks side by side)."
    if slurm_cluster.cpus < 2: pytest.skip(f'only {slurm_cluster.cpus} CPU')
    body = f'touch {tmp_path}/started-$SLURM_JOB_ID; for i in $(seq 100); do [ $(ls {tmp_path}/started-* | wc -l) -ge 2 ] && exit 0; sleep 0.1; done; exit 1'
    ids = [slurm_cluster.submit(_script(tmp_path / f'overlap{i}.sh', body, '--cpus-per-task=1', f'--output={tmp_path}/o{i}.log'))
           for i in range(2)]
    assert set(slurm_cluster.wait(ids, timeout=60).values()) == {'COMPLETED'}


def test_job_sees_venv_python(slurm_cluster, tmp_path):
    out = tmp_path / 'py.txt'
    script = _script(tmp_path / 'py.sh', f"""
        {sys.executable} -c 'import sys, mlprep; print(sys.prefix); print(mlprep.__file__)' > {out}
        """, f'--output={tmp_path}/py.log')
    job = slurm_cluster.submit(script)
    assert slurm_cluster.wait([job], timeout=60) == {job: 'COMPLETED'}, (tmp_path / 'py.log').read_text()
    prefix, mlprep_file = out.read_text().split()
    assert prefix == sys.prefix
    import mlprep
    assert Path(mlprep_file) == Path(mlprep.__file__)


def test_requeue_restarts_job(slurm_cluster, tmp_path):
    """First run creates a marker and idles; the test requeues it (as preemption would); the second run sees
    SLURM_RESTART_COUNT=1 and finishes."""
    c = slurm_cluster
    marker, runs = tmp_path / 'marker', tmp_path / 'runs.txt'
    script = _script(tmp_path / 'rq.sh', f"""
        echo "run $SLURM_JOB_ID restart=${{SLURM_RESTART_COUNT:-0}}" >> {runs}
        if [ ! -e {marker} ]; then touch {marker}; sleep 300; fi
        echo done >> {runs}
        """, '--requeue', f'--output={tmp_path}/rq.log', '--open-mode=append')
    job = c.submit(script)
    _wait_for(marker.exists, 60, 'first run of the requeue job')
    c.run('scontrol', 'requeue', job)
    assert c.wait([job], timeout=90) == {job: 'COMPLETED'}
    assert runs.read_text().splitlines() == [f'run {job} restart=0', f'run {job} restart=1', 'done']
    assert c.jobs([job])[job]['Restarts'] == '1'


def test_accounting_records_finished_jobs(slurm_cluster, tmp_path):
    "slurmdbd on MariaDB: sacct reports a finished job (Snakemake's SLURM executor plugin reads job states this way)."
    job = slurm_cluster.submit(_script(tmp_path / 'acct.sh', 'true', f'--output={tmp_path}/acct.log'))
    assert slurm_cluster.wait([job], timeout=60) == {job: 'COMPLETED'}
    _wait_for(lambda: slurm_cluster.run('sacct', '-X', '-n', '-P', '-j', job, '--format=JobIdRaw,State').strip() == f'{job}|COMPLETED',
              30, 'the job in sacct')
