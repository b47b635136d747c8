"""A throwaway PostgreSQL server for the unit and functional tests."""

import atexit
import glob
import os
import pwd
import random
import secrets
import shutil
import socket
import subprocess
import tempfile

# Debian's postgresql package puts each major version's server here.
BIN_GLOB = '/usr/lib/postgresql/*/bin'
# oslo.db's opportunistic user name; the password is new for each server.
USER = 'openstack_citest'
# Fast and disposable: nothing here must survive a crash of the host.
SETTINGS = {
    'listen_addresses': "'127.0.0.1'",
    'max_connections': '200',
    'fsync': 'off',
    'synchronous_commit': 'off',
    'full_page_writes': 'off',
    'log_min_messages': 'warning',
}


class ServerError(RuntimeError):
    """The server could not be found, started or stopped."""


def bindir():
    """Return the newest PostgreSQL server's bin folder.

    :raises ServerError: no server is installed.
    """
    def major(path):
        version = path.split('/')[-2]
        return int(version) if version.isdigit() else -1

    for folder in sorted(glob.glob(BIN_GLOB), key=major, reverse=True):
        if all(os.access(os.path.join(folder, tool), os.X_OK)
               for tool in ('initdb', 'pg_ctl', 'postgres')):
            return folder
    raise ServerError(
        "PostgreSQL's server (initdb, pg_ctl, postgres) is not in %s: "
        "install Debian's postgresql package (tools/setup.sh does)."
        % BIN_GLOB)


def _free_port():
    for port in random.sample(range(10000, 32768), 200):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(('127.0.0.1', port))
            except OSError:
                continue
            return port
    raise ServerError('found no free port for PostgreSQL.')


def _tail(path, lines=20):
    try:
        with open(path, errors='replace') as f:
            return ''.join(f.readlines()[-lines:])
    except OSError as e:
        return '(%s: %s)' % (path, e.strerror)


class Server:
    """One PostgreSQL server on 127.0.0.1, its data in a temporary folder.

    PostgreSQL refuses to run as root: as root, the server runs as the
    ``postgres`` user Debian's package creates (``nobody`` without it),
    which owns the folder.  The superuser is :data:`USER`, with a random
    password, over TCP as another host would connect.
    """

    def __init__(self):
        self.folder = None
        self.port = None
        self.password = secrets.token_hex(16)
        self._bin = None
        self._runas = []

    @property
    def url(self):
        """The superuser's SQLAlchemy URL of the ``postgres`` database."""
        return 'postgresql+psycopg2://%s:%s@127.0.0.1:%d/postgres' % (
            USER, self.password, self.port)

    @property
    def _data(self):
        return os.path.join(self.folder, 'data')

    @property
    def _log(self):
        return os.path.join(self.folder, 'postgresql.log')

    def _run(self, tool, *args, timeout=120):
        command = self._runas + [os.path.join(self._bin, tool)] + list(args)
        result = subprocess.run(command, cwd=self.folder, timeout=timeout,
                                stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        if result.returncode:
            raise ServerError('%s failed (exit %d):\n%s\n%s' % (
                ' '.join(command), result.returncode, result.stdout,
                _tail(self._log)))

    def start(self):
        """Make the cluster and start the server; return ``self``.

        :raises ServerError: with initdb's or the server's own words.
        """
        self._bin = bindir()
        # As root, in /tmp: the server's user must reach its folder.
        self.folder = tempfile.mkdtemp(
            prefix='rbdmig-pg-', dir='/tmp' if os.geteuid() == 0 else None)
        atexit.register(self.stop)
        pwfile = os.path.join(self.folder, 'pwfile')
        with open(pwfile, 'w') as f:
            f.write(self.password + '\n')
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam('postgres')
            except KeyError:
                user = pwd.getpwnam('nobody')
            for path in (self.folder, pwfile):
                os.chown(path, user.pw_uid, user.pw_gid)
            self._runas = ['runuser', '-u', user.pw_name, '--']
        self._run('initdb', '--pgdata', self._data, '--username', USER,
                  '--pwfile', pwfile, '--auth-local', 'trust',
                  '--auth-host', 'scram-sha-256', '--encoding', 'UTF8',
                  '--locale', 'C', '--no-sync')
        os.unlink(pwfile)
        with open(os.path.join(self._data, 'postgresql.conf'), 'a') as f:
            f.write('\n# rbdmig tests\nunix_socket_directories = %r\n'
                    % self.folder)
            for name, value in SETTINGS.items():
                f.write('%s = %s\n' % (name, value))
        # Another process may take the free port before the server does.
        for attempt in range(5):
            self.port = _free_port()
            try:
                self._run('pg_ctl', '--pgdata', self._data, '--log',
                          self._log, '--wait', '--timeout', '60',
                          '--options', '-p %d' % self.port, 'start')
                return self
            except ServerError:
                if attempt == 4:
                    raise

    def stop(self):
        """Stop the server and remove its folder; harmless twice."""
        if self.folder is None:
            return
        try:
            if os.path.exists(os.path.join(self._data, 'postmaster.pid')):
                try:
                    self._run('pg_ctl', '--pgdata', self._data, '--mode',
                              'fast', '--wait', '--timeout', '60', 'stop')
                except (ServerError, subprocess.TimeoutExpired):
                    self._run('pg_ctl', '--pgdata', self._data, '--mode',
                              'immediate', '--wait', 'stop')
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
            atexit.unregister(self.stop)
