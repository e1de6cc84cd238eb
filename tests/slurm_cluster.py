"""A real SLURM cluster on this one machine, for the tests: munged, slurmctld and several slurmd
(Slurm's multiple-slurmd setup: each node its own port, spool and log), all under a directory of
the test's own, started in the background and stopped by pid. Needs root and Debian's slurmctld,
slurmd, slurm-client and munge (``./setup.sh --test`` installs them where it runs as root);
:func:`unavailable` says why not otherwise.
"""
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from conftest import free_port, wait_until

TOOLS = ('munged', 'munge', 'slurmctld', 'slurmd', 'sbatch', 'squeue', 'scancel', 'sinfo',
         'scontrol')


def unavailable():
    """Why a cluster cannot be made here (one line), or None."""
    if os.geteuid() != 0:
        return 'SLURM daemons need root (run the tests as root; ./setup.sh --test installs them)'
    missing = [t for t in TOOLS if not shutil.which(t, path=os.environ.get('PATH', '') +
                                                    ':/usr/sbin:/sbin')]
    if missing:
        return ('SLURM is not installed (%s missing): ./setup.sh --test installs Debian\'s '
                'slurmctld, slurmd, slurm-client and munge as root' % ', '.join(missing))
    return None


def _which(tool):
    return shutil.which(tool, path=os.environ.get('PATH', '') + ':/usr/sbin:/sbin')


CONF = """ClusterName=farmtest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={dir}/munge/socket
StateSaveLocation={dir}/state
SlurmdSpoolDir={dir}/spool/%n
SlurmctldPidFile={dir}/slurmctld.pid
SlurmdPidFile={dir}/slurmd-%n.pid
SlurmctldLogFile={dir}/slurmctld.log
SlurmdLogFile={dir}/slurmd-%n.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
KillWait=30
MinJobAge=5
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
JobAcctGatherType=jobacct_gather/none
NodeName={names} NodeHostName={host} NodeAddr=127.0.0.1 Port={ports} CPUs=1 State=UNKNOWN
PartitionName=test Nodes={names} Default=YES MaxTime=INFINITE State=UP
"""


class SlurmCluster(object):
    """``nodes`` emulated nodes n1..nN; ``env`` is what SLURM's client tools need
    (``SLURM_CONF``). ``close()`` stops every daemon and every job's processes and removes
    the cluster's folder."""

    def __init__(self, nodes=3):
        # A folder of its own under /tmp, not pytest's (0700 all the way up: munged, running as
        # the munge user, must reach its socket and seed file)
        self.dir = tempfile.mkdtemp(prefix='slurm-')
        self.nodes = ['n%d' % k for k in range(1, nodes + 1)]
        self.processes = []
        for sub in ('munge', 'state', 'spool'):
            os.makedirs(os.path.join(self.dir, sub), exist_ok=True)
        self.conf = os.path.join(self.dir, 'slurm.conf')
        self.env = dict(os.environ, SLURM_CONF=self.conf)
        try:
            self._start_munge()
            self._start_slurm(nodes)
        except BaseException:
            self.close()
            raise

    def _start_munge(self):
        munge_dir = os.path.join(self.dir, 'munge')
        key = os.path.join(munge_dir, 'munge.key')
        with open(key, 'wb') as f:
            f.write(os.urandom(1024))
        user = pwd.getpwnam('munge')
        # munged refuses a key or socket directory others could write or read
        os.chmod(self.dir, 0o755)
        os.chmod(munge_dir, 0o711)  # its socket: reachable by all, writable by munge only
        os.chmod(key, 0o400)
        for path in (munge_dir, key):
            os.chown(path, user.pw_uid, user.pw_gid)
        socket_path = os.path.join(munge_dir, 'socket')
        command = [_which('munged'), '--foreground', '--key-file', key, '--socket', socket_path,
                   '--pid-file', os.path.join(munge_dir, 'munged.pid'),
                   '--log-file', os.path.join(munge_dir, 'munged.log'),
                   '--seed-file', os.path.join(munge_dir, 'munged.seed')]
        self._spawn('munged', command, user=user)
        if not wait_until(lambda: os.path.exists(socket_path), 20):
            raise RuntimeError('munged did not start: %s' % self.log('munged'))

    def _start_slurm(self, nodes):
        first = free_port()
        base = _free_run(nodes)  # the nodes' Port=[a-b]: consecutive ports
        with open(self.conf, 'w') as f:
            f.write(CONF.format(host=socket.gethostname(), ctld_port=first,
                                slurmd_port=base, dir=self.dir,
                                names='n[1-%d]' % nodes,
                                ports='[%d-%d]' % (base, base + nodes - 1)))
        self._spawn('slurmctld', [_which('slurmctld'), '-D', '-i', '-f', self.conf])
        for name in self.nodes:
            os.makedirs(os.path.join(self.dir, 'spool', name), exist_ok=True)
            self._spawn('slurmd-' + name, [_which('slurmd'), '-D', '-N', name, '-f', self.conf])

        def idle():
            out = self.run('sinfo', '-h', '-o', '%T %D', check=False).stdout.split()
            return out[:1] == ['idle'] and out[1:2] == [str(nodes)]
        if not wait_until(idle, 60, every=0.5):
            raise RuntimeError('the nodes never became idle: %s; slurmctld: %s' % (
                self.run('sinfo', check=False).stdout.strip(), self.log('slurmctld')[-1500:]))

    def _spawn(self, name, command, user=None):
        log = open(os.path.join(self.dir, name + '.out'), 'w')

        def drop():
            if user is not None:
                os.setgid(user.pw_gid)
                os.setuid(user.pw_uid)
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                   env=self.env, start_new_session=True, preexec_fn=drop)
        log.close()
        self.processes.append((name, process))

    def log(self, name):
        text = ''
        for path in (os.path.join(self.dir, name + '.out'), os.path.join(self.dir, name + '.log'),
                     os.path.join(self.dir, 'munge', name + '.log')):
            if os.path.exists(path):
                with open(path) as f:
                    text += f.read()
        return text

    def run(self, tool, *args, check=True, cwd=None, env=None, timeout=60):
        full = dict(self.env, **(env or {}))
        return subprocess.run([_which(tool)] + list(args), capture_output=True, text=True,
                              check=check, cwd=cwd, env=full, timeout=timeout)

    def job_state(self, job):
        out = self.run('scontrol', 'show', 'job', str(job), check=False).stdout
        for field in out.split():
            if field.startswith('JobState='):
                return field.split('=', 1)[1]
        return None

    def close(self):
        # Jobs first (their steps are slurmd's children), then the daemons, newest first.
        try:
            self.run('scancel', '--full', '--signal=KILL', '-u', 'root', check=False, timeout=10)
        except Exception:
            pass
        for name, process in reversed(self.processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.time() + 15
        for name, process in reversed(self.processes):
            try:
                process.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.processes = []
        shutil.rmtree(self.dir, ignore_errors=True)


def _free_run(n, tries=50):
    """The first of ``n`` consecutive TCP ports free on loopback now."""
    for _ in range(tries):
        base = free_port()
        if base + n > 65535:
            continue
        sockets = []
        try:
            for port in range(base, base + n):
                s = socket.socket()
                s.bind(('127.0.0.1', port))
                sockets.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in sockets:
                s.close()
    raise RuntimeError('no %d consecutive free ports found' % n)
