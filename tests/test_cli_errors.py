"""What a careless user meets: one `mlprep: error: ...` line and exit status 2, never a traceback, for what they can fix."""
import json, os, subprocess

import pytest

from tests.test_stages import mlprep


def one_line_error(r, *needles):
    assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
    lines = [l for l in r.stderr.splitlines() if l.startswith('mlprep:')]          # log lines may come first
    assert 'Traceback' not in r.stderr, r.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith('mlprep: error: '), r.stderr
    for n in needles: assert n in r.stderr, r.stderr


def test_unknown_command_and_flag():
    one_line_error(mlprep('dpoo'), "unknown command 'dpoo'")
    one_line_error(mlprep('data', '--datset', 'x'), "unknown option '--datset'", "did you mean '--dataset'?")


def test_debug_shows_the_traceback():
    r = mlprep('data', '--datset', 'x', '--debug')
    assert r.returncode != 0 and 'Traceback' in r.stderr


def test_output_folder_that_is_a_file(tmp_path):
    f = tmp_path / 'taken'; f.write_text('x')
    one_line_error(mlprep('data', '--dataset', 'demo:pairs', '--dataset_adapter', 'pairs', '--kind', 'pair', '--output_dir', f), str(f))


@pytest.fixture
def full_disk(tmp_path):
    "A 64 KiB tmpfs (needs root, as in CI); skipped where mounting is not allowed."
    d = tmp_path / 'full'; d.mkdir()
    if subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', str(d)], capture_output=True).returncode != 0:
        pytest.skip('cannot mount a tmpfs here')
    yield d
    subprocess.run(['umount', str(d)])


def test_full_disk_is_one_line(full_disk):
    r = mlprep('data', '--dataset', 'demo:openmathreasoning', '--dataset_adapter', 'openmathreasoning', '--kind', 'messages',
               '--output_dir', full_disk / 'run')
    one_line_error(r, 'no space left on the device', str(full_disk / 'run'))


def test_read_only_folder_is_one_line(tmp_path):
    d = tmp_path / 'ro'; d.mkdir()
    if subprocess.run(['mount', '-t', 'tmpfs', '-o', 'ro,size=64k', 'tmpfs', str(d)], capture_output=True).returncode != 0:
        pytest.skip('cannot mount a tmpfs here')
    try:
        one_line_error(mlprep('data', '--dataset', 'demo:pairs', '--dataset_adapter', 'pairs', '--kind', 'pair',
                              '--output_dir', d / 'run'), 'read-only file system', str(d))
    finally: subprocess.run(['umount', str(d)])


def test_failed_stage_run_is_marked_failed_and_its_notebook_stays_valid(tmp_path):
    run = tmp_path / 'run'
    r = mlprep('run', 'data', '-p', 'dataset', tmp_path / 'missing.jsonl', '-p', 'dataset_adapter', 'pairs', '-p', 'kind', 'pair',
               '--output_dir', run)
    assert r.returncode == 1 and 'failed in cell' in r.stderr and 'Traceback' not in r.stderr, r.stderr[-2000:]
    status = json.loads((run / 'run.json').read_text())
    assert status['status'] == 'failed' and 'missing.jsonl' in status['error']
    json.loads((run / 'data.ipynb').read_text())           # still a valid notebook


def test_atomic_writes_have_normal_permissions(tmp_path):
    from mlprep.core import atomic_write_json
    old = os.umask(0o022)
    try: atomic_write_json(tmp_path / 's.json', {})
    finally: os.umask(old)
    assert (tmp_path / 's.json').stat().st_mode & 0o777 == 0o644
