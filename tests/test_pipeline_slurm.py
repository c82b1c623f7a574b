"""`mlprep pipeline run --slurm` on the real single-node test cluster (tests/slurm/cluster.py, with slurmdbd accounting):
each step is a SLURM job that Snakemake's SLURM executor plugin submits and follows with `sacct`; the run ends complete.
A smaller pipeline than the shipped one (datagen -> diagnostics, tiny) keeps it to a few minutes; the local test runs
the shipped one."""
import json, os, subprocess, sys, threading, time
from pathlib import Path

import pytest

from tests.slurm.fixtures import slurm_cluster  # noqa: F401  (the fixture)

ROOT = Path(__file__).resolve().parents[1]
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("slurm")]   # one cluster: its tests share one worker

PIPELINE = """
name: small
steps:
  gen:
    job: datagen
    params: {num_samples: 2, max_new_tokens: 8, batch_size: 2}
  report:
    job: diagnostics
    inputs: {diagnostics: gen.diagnostics}
"""


def test_pipeline_on_slurm(slurm_cluster, tmp_path):
    c = slurm_cluster
    f, out = tmp_path / 'small.yaml', tmp_path / 'run'
    f.write_text(PIPELINE)
    seen, done = set(), threading.Event()

    def watch():                                        # the steps' jobs, as squeue shows them while they run
        while not done.is_set():
            r = subprocess.run(['squeue', '-h', '-o', '%i %j %T'], capture_output=True, text=True)
            seen.update(l.split()[1] for l in r.stdout.splitlines() if l.strip())
            time.sleep(1)
    t = threading.Thread(target=watch, daemon=True); t.start()
    try:
        r = subprocess.run([sys.executable, '-m', 'mlprep.cli', 'pipeline', 'run', f, '--output_dir', out, '--slurm',
                            '--cpus_per_task', '1', '--mem', '1G', '--time', '00:10:00',
                            '--snakemake', '--slurm-init-seconds-before-status-checks 2 --seconds-between-status-checks 2'],
                           capture_output=True, text=True, cwd=ROOT, env={**os.environ, 'OMP_NUM_THREADS': '1'}, timeout=900)
    finally: done.set(); t.join()
    assert r.returncode == 0, (r.stdout + r.stderr)[-5000:] + c.log_tails()
    acct = c.run('sacct', '-X', '-n', '-P', '--format=JobIdRaw,JobName,State').split()
    ids = [l.split('|') for l in acct]
    assert len(ids) == 2 and all(s == 'COMPLETED' for _, _, s in ids), acct
    assert {n for _, n, _ in ids} & seen, (seen, acct)               # squeue showed the jobs sacct reports
    for step, job in (('gen', 'datagen'), ('report', 'diagnostics')):
        run = json.loads((out / step / 'run.json').read_text())
        assert run['status'] == 'completed' and run.get('slurm_job_id') in {i for i, _, _ in ids}, run
        assert (out / step / f'{job}.ipynb').exists() and (out / step / 'done.json').exists()
    assert json.loads((out / 'report' / 'run.json').read_text())['started'] >= json.loads((out / 'gen' / 'run.json').read_text())['finished']
