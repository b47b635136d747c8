"""The sandbox's daemons: ports, environment, and stopping them."""

import atexit
import json
import os
import random
import shutil
import signal
import socket
import threading
import time

from oslo_log import log as logging
from oslo_utils import units

from rbdmig.exception import SandboxError

LOG = logging.getLogger(__name__)

PIDS_FILE = 'pids.json'
MARKER_FILE = '.rbdmig-sandbox'
CEPH_ENV = ('CEPH_ARGS', 'CEPH_CONF', 'CEPH_KEYRING')  # dropped for children
LIVE = set()  # clusters to stop if this process exits without stop()


def free_port(host='127.0.0.1'):
    """A free port of ``host`` below the ephemeral range, for no client
    to take."""
    for port in random.sample(range(10000, 32768), 200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    raise SandboxError(reason='found no free port for the mon')


def tail(path, lines=25):
    try:
        with open(path, 'rb') as f:
            f.seek(max(0, os.fstat(f.fileno()).st_size - 64 * units.Ki))
            text = f.read().decode('utf-8', 'replace')
    except OSError as e:
        return f'--- {path}: {e.strerror}'
    text = '\n'.join(text.splitlines()[-lines:])
    return f'--- {path}:\n{text}'


def env():
    return {k: v for k, v in os.environ.items() if k not in CEPH_ENV}


def alive(pid, conf_path):
    """True if ``pid`` runs (not a zombie) with ``conf_path`` in its argv."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            if f.read().rsplit(')', 1)[1].split()[0] == 'Z':
                return False
        with open(f'/proc/{pid}/cmdline', 'rb') as f:
            return conf_path.encode() in f.read().split(b'\0')
    except (OSError, IndexError):
        return False


def kill(pids, conf_path, procs=(), timeout=15):
    """SIGTERM the daemons; SIGKILL those still alive after ``timeout``."""
    pids = [p for p in set(pids) if alive(p, conf_path)]
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10)):
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                continue
        deadline = time.monotonic() + wait
        while pids and time.monotonic() < deadline:
            time.sleep(0.05)
            for proc in procs:
                proc.poll()  # reap our own children: zombies are not alive
            pids = [p for p in pids if alive(p, conf_path)]
        if not pids:
            return
        LOG.warning('Ceph daemons %s survived signal %d', pids, sig)
    raise SandboxError(reason=f'processes {pids} survived SIGKILL')


def _sigterm(signum, frame):
    raise SystemExit(128 + signum)


def exit_on_sigterm():
    """Make SIGTERM exit through ``atexit``, which stops :data:`LIVE`.

    Python's default SIGTERM ends the process without running ``atexit``,
    leaking every daemon a sandbox started.  Only installed from the main
    thread, and only over the default handler.
    """
    if (threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL):
        signal.signal(signal.SIGTERM, _sigterm)


@atexit.register
def _stop_live():
    for cluster in list(LIVE):
        try:
            cluster.stop()
        except SandboxError as e:
            LOG.error('Could not stop %r at exit: %s', cluster, e)


def stop_dir(base_dir, remove=True, timeout=15):
    """Stop the sandbox cluster of ``base_dir``, from its PID file.

    Works from any process: only PIDs whose command line names this
    cluster's ceph.conf are signalled, so recycled PIDs are left alone.

    :param base_dir: the cluster's directory (``Cluster.base_dir``).
    :param remove: also delete the directory, if it is a sandbox's.
    :param timeout: seconds between SIGTERM and SIGKILL.
    :returns: the PIDs recorded in the directory.
    """
    base_dir = os.path.abspath(base_dir)
    try:
        with open(os.path.join(base_dir, PIDS_FILE)) as f:
            pids = list(json.load(f).values())
    except FileNotFoundError:
        pids = []
    kill(pids, os.path.join(base_dir, 'ceph.conf'), timeout=timeout)
    if remove and os.path.exists(os.path.join(base_dir, MARKER_FILE)):
        shutil.rmtree(base_dir, ignore_errors=True)
        LOG.info('Removed Ceph sandbox directory %s', base_dir)
    return pids
