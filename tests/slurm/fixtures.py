"""pytest plugin: the session-scoped `slurm_cluster` fixture (a real single-node SLURM cluster).

Use it from a test module with `from tests.slurm.fixtures import slurm_cluster  # noqa: F401`, or for every
test module with `pytest_plugins = ["tests.slurm.fixtures"]` in tests/conftest.py. Both give the same cluster:
it is started once per test process and stopped at the end of the session (and by atexit).

Env MLPREP_SLURM: unset/auto = skip with the reason when the cluster cannot run (not root, no apt-get,
install failed); require = fail instead of skipping; off = skip without trying.
"""
import os
import pytest
from tests.slurm.cluster import SlurmCluster, available

_cluster = None


def _shared_cluster():
    global _cluster
    if _cluster is None or _cluster._stopped:
        ok, reason = available()
        if not ok:
            if os.environ.get('MLPREP_SLURM', '').lower() == 'require': pytest.fail(f'MLPREP_SLURM=require: {reason}')
            pytest.skip(reason)
        _cluster = SlurmCluster().start()
    return _cluster


@pytest.fixture(scope='session')
def slurm_cluster():
    "A running single-node SLURM cluster (tests.slurm.cluster.SlurmCluster); SLURM_CONF points at it."
    cluster = _shared_cluster()
    try: yield cluster
    finally: cluster.stop()
