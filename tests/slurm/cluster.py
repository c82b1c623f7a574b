"""A real single-node SLURM cluster for tests: munged + MariaDB + slurmdbd + slurmctld + slurmd on this machine.

Not a mock: the daemons are Debian's `slurm-wlm`, `slurmdbd`, `mariadb-server` and `munge`, installed with apt-get when missing
(tests run as root here and in CI). Everything the cluster writes lives in one private temp dir:
slurm.conf, state, spool, logs and a private munge socket, so it never touches /etc/slurm or
a system munged or MariaDB, and two clusters (or two runs in a row) do not collide (ports are picked free).

    ok, reason = available()          # installs slurm if needed; (False, why) if it cannot run
    with SlurmCluster() as cluster:   # SLURM_CONF is set in os.environ while it runs
        job_id = cluster.submit('job.sh', '--requeue')
        states = cluster.wait([job_id], timeout=60)   # {'12': 'COMPLETED'}
        cluster.run('sacct', '-X', '-n', '-j', job_id)    # accounting: slurmdbd on a private MariaDB

Accounting is what a real cluster has and what tools read finished jobs from (`sacct`: Snakemake's SLURM executor
plugin reads job states with it): a private MariaDB (own datadir, socket and TCP port) stores it through slurmdbd.

Every daemon is started by us as a child (foreground mode), tracked by pid, and stopped by pid
on exit -- also from atexit, and the kernel sends SIGTERM to them if the test process dies.
This module imports nothing from mlprep on purpose.
"""
import atexit, ctypes, os, re, shutil, signal, socket, subprocess, sys, tempfile, time
from pathlib import Path

PACKAGES = ['slurm-wlm', 'munge', 'slurmdbd', 'mariadb-server']
CLIENTS = ['sbatch', 'squeue', 'scontrol', 'sinfo', 'scancel', 'sacct', 'sacctmgr']
DAEMONS = ['slurmctld', 'slurmd', 'munged', 'slurmdbd', 'mariadbd', 'mariadb-install-db']
# Job states after which a job will not run again by itself (scontrol's JobState names).
FINAL_STATES = {'COMPLETED', 'FAILED', 'CANCELLED', 'TIMEOUT', 'NODE_FAIL', 'PREEMPTED', 'BOOT_FAIL',
                'DEADLINE', 'OUT_OF_MEMORY', 'SPECIAL_EXIT', 'REVOKED'}
_SEARCH_PATH = os.pathsep.join([os.environ.get('PATH', ''), '/usr/sbin', '/usr/bin', '/sbin', '/bin'])


def which(name):
    "Full path of a slurm/munge program (daemons live in /usr/sbin, which may not be on PATH)."
    return shutil.which(name, path=_SEARCH_PATH)


def _missing(): return [p for p in CLIENTS + DAEMONS if which(p) is None]


def _tail(path, n=40):
    try: lines = Path(path).read_text(errors='replace').splitlines()
    except OSError: return f'({path}: missing)'
    return '\n'.join(lines[-n:]) or f'({path}: empty)'


def _apt(args, timeout):
    "Run apt-get non-interactively; return (ok, output)."
    env = {**os.environ, 'DEBIAN_FRONTEND': 'noninteractive', 'NEEDRESTART_MODE': 'a'}
    cmd = ['apt-get', '-q', '-y', '-o', 'DPkg::Lock::Timeout=120',
           '-o', 'Dpkg::Options::=--force-confdef', '-o', 'Dpkg::Options::=--force-confold', *args]
    try:
        r = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, f'{" ".join(cmd)} timed out after {timeout} s'
    return r.returncode == 0, f'$ {" ".join(cmd)}  (exit {r.returncode})\n{r.stdout[-2000:]}{r.stderr[-2000:]}'


def install(timeout=300):
    "Install slurm-wlm + munge with apt-get (apt-get update first if the plain install fails). Return (ok, log)."
    install_cmd = ['install', '--no-install-recommends', *PACKAGES]
    ok, log = _apt(install_cmd, timeout)
    if not ok:
        ok_update, log_update = _apt(['update'], timeout)
        ok, log2 = _apt(install_cmd, timeout)
        log = f'{log}\n{log_update}\n{log2}'
    missing = _missing()
    if ok and missing: ok, log = False, f'{log}\ninstalled, but still missing: {missing}'
    return ok, log


_available = None

def available(install_missing=True):
    """Can a real cluster run here? Return (True, '') or (False, reason) for `pytest.skip(reason)`.
    Installs slurm + munge with apt-get when they are missing (once per process).
    Env MLPREP_SLURM=off skips without trying."""
    global _available
    if _available is not None: return _available
    if os.environ.get('MLPREP_SLURM', '').lower() in ('0', 'off', 'no', 'skip'):
        return (False, 'MLPREP_SLURM=off')
    if not sys.platform.startswith('linux'): _available = (False, f'needs Linux, not {sys.platform}')
    elif os.geteuid() != 0: _available = (False, 'needs root: the test cluster runs slurmd/slurmctld/munged as root')
    elif not _missing(): _available = (True, '')
    elif shutil.which('apt-get') is None: _available = (False, f'slurm is not installed ({_missing()} missing) and there is no apt-get')
    elif not install_missing: _available = (False, f'slurm is not installed ({_missing()} missing)')
    else:
        t0 = time.monotonic()
        ok, log = install()
        print(f'[slurm test cluster] apt-get install {" ".join(PACKAGES)}: {"ok" if ok else "FAILED"} '
              f'in {time.monotonic() - t0:.0f} s', file=sys.stderr)
        _available = (True, '') if ok else (False, f'installing {PACKAGES} with apt-get failed:\n{log[-3000:]}')
    return _available


def _free_ports(n):
    "n distinct free TCP ports (all held open while picking, so they differ)."
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks: s.bind(('127.0.0.1', 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks: s.close()


def _die_with_parent():
    "preexec_fn: the kernel sends SIGTERM to the daemon if the process that started it dies."
    try: ctypes.CDLL('libc.so.6', use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1
    except Exception: pass


def node_hardware():
    "CPUs/topology/RealMemory of this machine as `slurmd -C` reports it (fallback: os.cpu_count + /proc/meminfo)."
    hw = {}
    try:
        out = subprocess.run([which('slurmd'), '-C'], capture_output=True, text=True, timeout=30,
                             stdin=subprocess.DEVNULL, env={**os.environ, 'SLURM_CONF': '/dev/null'}).stdout
        line = next((l for l in out.splitlines() if l.startswith('NodeName=')), '')
        hw = dict(kv.split('=', 1) for kv in line.split()[1:] if '=' in kv)
    except Exception: pass
    if 'CPUs' not in hw or 'RealMemory' not in hw:
        kb = int(re.search(r'MemTotal:\s+(\d+)', Path('/proc/meminfo').read_text()).group(1))
        hw = {'CPUs': str(os.cpu_count() or 1), 'RealMemory': str(kb // 1024)}
    keep = ['CPUs', 'Boards', 'SocketsPerBoard', 'CoresPerSocket', 'ThreadsPerCore', 'RealMemory']
    return {k: int(hw[k]) for k in keep if k in hw}


def _parse_job_line(line):
    "One line of `scontrol -o show job` as a dict (values may contain spaces, e.g. Command=)."
    return dict(re.findall(r'(?:^|\s)([A-Za-z][\w:/]*)=(.*?)(?=\s[A-Za-z][\w:/]*=|$)', line.strip()))


class SlurmCluster:
    """A private single-node SLURM cluster (munged + MariaDB + slurmdbd + slurmctld + slurmd), started as root.

    Use as a context manager (or call start()/stop()). While running, os.environ['SLURM_CONF'] points at
    its slurm.conf, so sbatch/squeue/scontrol from this process and its children talk to it."""
    partition = 'debug'

    def __init__(self, start_timeout=60, cred_expire=10, extra_conf='', name='mlpreptest'):
        """start_timeout: seconds to wait for the node to be idle. cred_expire: job credential lifetime, which is
        also how long a requeued job waits before it can start again (slurm's default is 120 s).
        extra_conf: lines appended to slurm.conf (e.g. 'PreemptType=preempt/partition_prio')."""
        self.start_timeout, self.cred_expire, self.extra_conf, self.name = start_timeout, cred_expire, extra_conf, name
        self.procs = {}          # name -> Popen of each daemon we started
        self.dir = self.conf = None
        self._old_conf = None
        self._stopped = True

    # ---- start ---------------------------------------------------------------------------------
    def start(self):
        ok, reason = available()
        if not ok: raise RuntimeError(f'cannot start a SLURM test cluster: {reason}')
        reap_stale_clusters()
        self.dir = Path(tempfile.mkdtemp(prefix=_PREFIX))
        self.dir.chmod(0o755)  # munged wants its socket reachable by everyone (jobs run as root anyway)
        (self.dir / 'owner').write_text(f'{os.getpid()} {_proc_start(os.getpid())}')
        self._stopped = False
        atexit.register(self.stop)
        try:
            for sub in ['state', 'spool', 'log', 'munge']: (self.dir / sub).mkdir()
            self._start_munged()
            self.conf = self.dir / 'slurm.conf'
            self.conf.write_text(self._slurm_conf())
            self._old_conf = os.environ.get('SLURM_CONF')
            os.environ['SLURM_CONF'] = str(self.conf)
            self._write_client_shims()
            self._start_accounting()
            self._spawn('slurmctld', [which('slurmctld'), '-D', '-c', '-f', str(self.conf)])
            self._spawn('slurmd', [which('slurmd'), '-D', '-c', '-N', self.node, '-f', str(self.conf)])
            self._wait_idle()
        except BaseException as e:
            logs = self.log_tails()
            self.stop()
            if not isinstance(e, Exception): raise  # KeyboardInterrupt etc.: stopped, now pass it on
            raise RuntimeError(f'SLURM test cluster failed to start: {e}\n{logs}') from e
        return self

    def _spawn(self, name, cmd):
        log = open(self.dir / 'log' / f'{name}.stdout', 'wb')
        self.procs[name] = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                            env=dict(os.environ), preexec_fn=_die_with_parent, cwd=self.dir)
        log.close()

    def _start_munged(self):
        "A private munged (own socket, key copy and logs in our temp dir), independent of any system munged."
        key = self.dir / 'munge' / 'munge.key'
        system_key = Path('/etc/munge/munge.key')
        if not system_key.exists():  # the munge package creates it; make one if it did not
            system_key.parent.mkdir(parents=True, exist_ok=True)
            system_key.write_bytes(os.urandom(1024))
            shutil.chown(system_key, 'munge', 'munge') if _user_exists('munge') else None
            system_key.chmod(0o400)
        shutil.copyfile(system_key, key)
        key.chmod(0o400)  # owned by root, which runs our munged
        self.munge_socket = self.dir / 'munge' / 'munge.socket'
        m = self.dir / 'munge'
        self._spawn('munged', [which('munged'), '--foreground', '--force', f'--socket={self.munge_socket}',
                               f'--key-file={key}', f'--pid-file={m}/munged.pid', f'--seed-file={m}/munged.seed',
                               '--num-threads=2'])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.procs['munged'].poll() is not None: raise RuntimeError('munged exited')
            if self.munge_socket.exists():
                r = subprocess.run(f'{which("munge")} -n -S {self.munge_socket} | {which("unmunge")} -S {self.munge_socket}',
                                   shell=True, capture_output=True, text=True, timeout=10)
                if r.returncode == 0: return
            time.sleep(0.1)
        raise RuntimeError('munged did not answer within 20 s')

    def _write_client_shims(self):
        """A node of a real cluster finds slurm.conf in /etc/slurm; ours is private, so tools that drop SLURM_* from the
        environment (Snakemake's jobstep executor does before its `srun`) would find no cluster. While the cluster runs,
        `DIR/bin` comes first on PATH with one shim per client that sets SLURM_CONF when it is missing."""
        b = self.dir / 'bin'
        b.mkdir()
        for name in CLIENTS + ['srun', 'salloc', 'sstat']:
            real = which(name)
            if real is None: continue
            (b / name).write_text(f'#!/bin/sh\nexport SLURM_CONF="${{SLURM_CONF:-{self.conf}}}"\nexec {real} "$@"\n')
            (b / name).chmod(0o755)
        self._old_path = os.environ.get('PATH', '')
        os.environ['PATH'] = f'{b}{os.pathsep}{self._old_path}'

    def _start_accounting(self):
        "A private MariaDB (datadir, socket, TCP port in our temp dir) and slurmdbd on it; slurmdbd.conf sits beside slurm.conf."
        db = self.dir / 'mariadb'
        db.mkdir()
        r = subprocess.run([which('mariadb-install-db'), f'--datadir={db}/data', '--user=root', '--auth-root-authentication-method=normal',
                            '--skip-test-db', '--no-defaults'], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
        if r.returncode != 0: raise RuntimeError(f'mariadb-install-db failed: {r.stderr[-1500:]}')
        sock = db / 'mysql.sock'
        self._spawn('mariadbd', [which('mariadbd'), '--no-defaults', f'--datadir={db}/data', f'--socket={sock}', '--user=root',
                                 f'--port={self.ports[2]}', '--bind-address=127.0.0.1', f'--pid-file={db}/mariadbd.pid',
                                 '--skip-log-bin', '--innodb-buffer-pool-size=16M', '--performance-schema=OFF'])
        sql = ("CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm'; GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1'; "
               "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm'; GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';")
        self._wait_for(lambda: subprocess.run([which('mariadb'), '--no-defaults', f'--socket={sock}', '-uroot', '-e', sql],
                                              capture_output=True, timeout=10, stdin=subprocess.DEVNULL).returncode == 0,
                       'mariadbd', 60)
        d, conf = self.dir, self.dir / 'slurmdbd.conf'
        conf.write_text(f"""# Written by tests/slurm/cluster.py
AuthType=auth/munge
AuthInfo=socket={self.munge_socket}
DbdHost={self.node}
DbdAddr=127.0.0.1
DbdPort={self.ports[3]}
SlurmUser=root
LogFile={d}/log/slurmdbd.log
PidFile={d}/slurmdbd.pid
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={self.ports[2]}
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
""")
        conf.chmod(0o600)
        self._spawn('slurmdbd', [which('slurmdbd'), '-D'])
        self._wait_for(lambda: subprocess.run([which('sacctmgr'), '-n', 'list', 'cluster'], capture_output=True, timeout=10,
                                              stdin=subprocess.DEVNULL).returncode == 0, 'slurmdbd', 60)
        self.run('sacctmgr', '-i', 'add', 'cluster', self.name)

    def _wait_for(self, ok, name, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.procs[name].poll() is not None: raise RuntimeError(f'{name} exited with {self.procs[name].returncode}')
            if ok(): return
            time.sleep(0.3)
        raise RuntimeError(f'{name} did not answer within {timeout} s')

    def _slurm_conf(self):
        self.node = socket.gethostname().split('.')[0]
        self.hardware = hw = node_hardware()
        self.cpus = hw['CPUs']
        # A little memory headroom: a VM whose memory shrinks would otherwise be drained for "Low RealMemory".
        mem = max(1, int(hw['RealMemory'] * 0.95))
        hw = {**hw, 'RealMemory': mem}
        self.ports = _free_ports(4)   # slurmctld, slurmd, mariadbd, slurmdbd
        d = self.dir
        node = ' '.join(f'{k}={v}' for k, v in hw.items())
        return f"""# Written by tests/slurm/cluster.py: a private single-node test cluster.
ClusterName={self.name}
SlurmctldHost={self.node}(127.0.0.1)
SlurmctldPort={self.ports[0]}
SlurmdPort={self.ports[1]}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket},cred_expire={self.cred_expire}
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort={self.ports[3]}
AccountingStoragePass={self.munge_socket}
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=1
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU={mem // self.cpus}
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
MinJobAge=600
Waittime=0
JobRequeue=1
NodeName={self.node} NodeAddr=127.0.0.1 NodeHostname={self.node} {node} State=UNKNOWN
PartitionName={self.partition} Nodes=ALL Default=YES MaxTime=INFINITE State=UP
{self.extra_conf}
"""

    def _wait_idle(self):
        deadline, state = time.monotonic() + self.start_timeout, '?'
        while time.monotonic() < deadline:
            for name, p in self.procs.items():
                if p.poll() is not None: raise RuntimeError(f'{name} exited with {p.returncode}')
            r = subprocess.run([which('sinfo'), '-h', '-N', '-n', self.node, '-o', '%T'],
                               capture_output=True, text=True, timeout=15, stdin=subprocess.DEVNULL)
            state = r.stdout.strip()
            if r.returncode == 0 and state == 'idle': return
            time.sleep(0.3)
        raise RuntimeError(f'node {self.node} not idle after {self.start_timeout} s (sinfo: {state!r})')

    # ---- use -----------------------------------------------------------------------------------
    def run(self, *args, timeout=30, cwd=None):
        "Run a slurm client command (`cluster.run('scontrol', 'requeue', '12')`); return stdout, raise on failure."
        r = subprocess.run([which(args[0]) or args[0], *map(str, args[1:])], capture_output=True, text=True,
                           timeout=timeout, stdin=subprocess.DEVNULL, cwd=cwd)
        if r.returncode != 0:
            raise RuntimeError(f'{" ".join(map(str, args))} failed ({r.returncode}): {r.stderr.strip()}')
        return r.stdout

    def submit(self, script_path, *sbatch_args, cwd=None):
        "sbatch a script (extra sbatch options before it); return the job id as a string ('12')."
        out = self.run('sbatch', '--parsable', *sbatch_args, script_path, cwd=cwd)
        return out.strip().split(';')[0]

    def jobs(self, job_ids):
        """{job: scontrol fields} for jobs and their array tasks; keys are '12' or '12_0' for array task 0
        (a not yet started rest of an array looks like '12_[1-3]')."""
        out = {}
        for jid in job_ids:
            r = subprocess.run([which('scontrol'), '-o', 'show', 'job', str(jid)], capture_output=True, text=True,
                               timeout=30, stdin=subprocess.DEVNULL)
            if r.returncode != 0: raise RuntimeError(f'scontrol show job {jid}: {r.stderr.strip()}')
            for line in r.stdout.splitlines():
                if not line.strip(): continue
                f = _parse_job_line(line)
                task = f.get('ArrayTaskId')
                key = f"{f['ArrayJobId']}_{task if task.isdigit() else '[' + task.strip('[]') + ']'}" \
                    if task not in (None, 'N/A') else f['JobId']
                out[key] = f
        return out

    def states(self, job_ids):
        "{job: JobState} (see jobs())."
        return {k: f['JobState'] for k, f in self.jobs(job_ids).items()}

    def wait(self, job_ids, timeout=60, poll=0.5):
        "Wait until every job (and array task) is in a final state; return {job: state}. TimeoutError if not."
        deadline = time.monotonic() + timeout
        while True:
            states = self.states(job_ids)
            if states and all(s in FINAL_STATES for s in states.values()): return states
            if time.monotonic() > deadline:
                raise TimeoutError(f'jobs not finished after {timeout} s: {states}\n{self.log_tails()}')
            time.sleep(poll)

    def log_tails(self, n=30):
        "The last lines of every daemon log (for error messages)."
        if self.dir is None: return ''
        names = ['slurmctld.log', 'slurmd.log', 'slurmdbd.log', 'slurmctld.stdout', 'slurmd.stdout', 'slurmdbd.stdout',
                 'mariadbd.stdout', 'munged.stdout']
        return '\n'.join(f'--- {name} ---\n{_tail(self.dir / "log" / name, n)}' for name in names
                         if (self.dir / 'log' / name).exists())

    # ---- stop ----------------------------------------------------------------------------------
    def stop(self):
        "Cancel jobs, stop every daemon we started (by pid), kill leftover job processes, remove the temp dir."
        if self._stopped: return
        self._stopped = True
        try:
            ctld = self.procs.get('slurmctld')
            if ctld is not None and ctld.poll() is None: self._cancel_all()
        except Exception: pass
        for name in ['slurmd', 'slurmctld', 'slurmdbd', 'mariadbd', 'munged']:
            p = self.procs.get(name)
            if p is None or p.poll() is not None: continue
            p.terminate()
            try: p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill(); p.wait(10)
        self._kill_leftovers()
        if getattr(self, '_old_path', None) is not None: os.environ['PATH'] = self._old_path
        if self._old_conf is None: os.environ.pop('SLURM_CONF', None)
        else: os.environ['SLURM_CONF'] = self._old_conf
        if self.dir is not None: shutil.rmtree(self.dir, ignore_errors=True)
        try: atexit.unregister(self.stop)
        except Exception: pass

    def _cancel_all(self):
        ids = self.run('squeue', '-h', '-t', 'PD,R,CG,S,CF,RQ,RH,RF,SE,SO,ST,RS', '-o', '%i').split()
        if not ids: return
        subprocess.run([which('scancel'), *ids], capture_output=True, timeout=30, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and self.run('squeue', '-h', '-o', '%i').strip():
            time.sleep(0.3)

    def _kill_leftovers(self):
        "Kill processes (slurmstepd, job scripts) that still carry our temp dir in their SLURM_CONF or command line."
        if self.dir is not None: _kill_marked(self.dir)

    def __enter__(self): return self.start()
    def __exit__(self, *exc): self.stop()


_PREFIX = 'mlprep-slurm-'


def _kill_marked(cluster_dir):
    """SIGKILL every process whose environment (SLURM_CONF=<dir>/slurm.conf: job scripts and their children)
    or command line (daemons, slurm_script) names this cluster's private dir. Pids are read from /proc, never by name."""
    mark, me = f'{cluster_dir}/'.encode(), os.getpid()
    for d in Path('/proc').iterdir():
        if not d.name.isdigit() or int(d.name) == me: continue
        try: blob = (d / 'environ').read_bytes() + b'\0' + (d / 'cmdline').read_bytes()
        except OSError: continue
        if mark in blob:
            try: os.kill(int(d.name), signal.SIGKILL)
            except OSError: pass


def _proc_start(pid):
    "Start time of a process (field 22 of /proc/PID/stat), to tell a live owner from a reused pid; None if gone."
    try: return Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()[19]
    except (OSError, IndexError): return None


def reap_stale_clusters():
    """Clean up after test processes that died without stopping their cluster (e.g. kill -9): the kernel already
    sent SIGTERM to their daemons; here we kill what is left of them and their jobs, and remove their dirs."""
    for d in Path(tempfile.gettempdir()).glob(f'{_PREFIX}*'):
        try: pid, start = (d / 'owner').read_text().split()
        except (OSError, ValueError): continue  # not ours, or being created right now
        if _proc_start(int(pid)) == start: continue  # its owner is alive
        _kill_marked(d)
        shutil.rmtree(d, ignore_errors=True)


def _user_exists(name):
    import pwd
    try: pwd.getpwnam(name); return True
    except KeyError: return False
