"""The sandbox Cluster: start a mon, a mgr and OSDs; create pools."""

import json
import os
import shutil
import signal
import subprocess
import time
import uuid

import rados
from oslo_log import log as logging
from oslo_utils import units

from rbdmig.exception import SandboxError
from rbdmig.sandbox import processes
from rbdmig.sandbox import templates

LOG = logging.getLogger(__name__)

BINARIES = ('ceph', 'ceph-mon', 'ceph-mgr', 'ceph-osd', 'monmaptool', 'rbd')
_DRIVERS = 'rbdmig.volume.drivers.'


class Cluster:
    """A single-host Ceph cluster (mon, mgr, OSDs) living in ``base_dir``.

    :param base_dir: the cluster's own directory: created if missing, it
        must be empty; :meth:`stop` removes it.
    :param name: a label for logs and errors.
    :param objectstore: ``'memstore'`` (data in RAM, at most ``osd_bytes``
        per OSD) or ``'bluestore'`` (on a sparse file per OSD).
    :param osd_count: the number of OSDs.
    :param osd_bytes: the capacity of each OSD.
    :param pools: the RBD pools to create, one backend each.
    :param backend_prefix: backends are named ``<prefix>-a``, ``-b``...
    :param timeout: the seconds :meth:`start` may take.
    :param detach: leave the daemons running when this process exits
        without :meth:`stop` (:func:`processes.stop_dir` stops them later); by
        default they are stopped at exit.
    :param public_addr: the IPv4 address the mon and the OSDs listen on
        and advertise: loopback by default; a local interface's address
        makes the cluster reachable from elsewhere (the bench's network
        namespace).
    """

    def __init__(self, base_dir, name='sandbox', objectstore='memstore',
                 osd_count=1, osd_bytes=2 * units.Gi,
                 pools=('volumes-a', 'volumes-b'), backend_prefix='ceph',
                 timeout=120, detach=False, public_addr='127.0.0.1'):
        if objectstore not in ('memstore', 'bluestore') or osd_count < 1:
            raise SandboxError(reason=f'cannot run {osd_count} OSDs with '
                               f'objectstore {objectstore!r}')
        self.base_dir = os.path.abspath(base_dir)
        self.name = name
        self.objectstore = objectstore
        self.osd_count = osd_count
        self.osd_bytes = int(osd_bytes)
        self.pools = list(pools)
        self.timeout = timeout
        self.detach = detach
        self.public_addr = public_addr
        self.conf_path = self._path('ceph.conf')
        self.admin_keyring_path = self._path('ceph.client.admin.keyring')
        self.rbdmig_conf_path = self._path('rbdmig.conf')
        self.file_volume_dir = self._path('files')
        self.backends = {f'{backend_prefix}-{chr(ord("a") + i)}': pool
                         for i, pool in enumerate(self.pools)}
        self.backends['files'] = 'file'
        self.fsid = self.mon_addr = None
        self.started = False
        self._procs = {}
        self._cmds = {}
        self._owned = False  # base_dir holds our files: ours to remove
        self._deadline = 0

    def __repr__(self):
        return f'<Cluster {self.name} {self.fsid} in {self.base_dir}>'

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    @property
    def pids(self):
        """The daemons started, as a dict of name (``osd.0``) to PID."""
        return {name: proc.pid for name, proc in self._procs.items()}

    def _path(self, *parts):
        return os.path.join(self.base_dir, *parts)

    def _run(self, *cmd, input=None, timeout=120):
        if isinstance(input, str):
            input = input.encode()
        try:
            res = subprocess.run(cmd, input=input, capture_output=True,
                                 env=processes.env(), timeout=timeout,
                                 check=False)
        except subprocess.TimeoutExpired:
            raise SandboxError(reason=f'{" ".join(cmd)} timed out after '
                               f'{timeout}s') from None
        if res.returncode:
            err = res.stderr.decode('utf-8', 'replace').strip()
            raise SandboxError(reason=f'{" ".join(cmd)} failed (exit '
                               f'{res.returncode}): {err}')
        return res.stdout.decode('utf-8', 'replace')

    def ceph(self, *args, input=None):
        """Run the ``ceph`` CLI against this cluster.

        :param args: its arguments, e.g. ``('df', '--format', 'json')``.
        :param input: text or bytes for its standard input.
        :returns: its standard output, as text.
        :raises SandboxError: with its standard error, if it fails.
        """
        return self._run('ceph', '--conf', self.conf_path,
                         '--connect-timeout', '30', *args, input=input)

    def rbd(self, *args):
        """Run the ``rbd`` CLI against this cluster.

        :param args: its arguments, e.g. ``('ls', 'volumes-a')``.
        :returns: its standard output, as text.
        :raises SandboxError: with its standard error, if it fails.
        """
        return self._run('rbd', '--conf', self.conf_path, *args)

    def connect(self, timeout=30):
        """Connect to this cluster as client.admin.

        :param timeout: seconds to wait for the monitor.
        :returns: a connected ``rados.Rados``; the caller shuts it down.
        """
        client = rados.Rados(conffile=self.conf_path, rados_id='admin',
                             conf={'keyring': self.admin_keyring_path,
                                   'client_mount_timeout': str(timeout),
                                   'rados_mon_op_timeout': str(timeout)})
        try:
            client.connect(timeout=timeout)
        except rados.Error:
            client.shutdown()
            raise
        return client

    def add_client(self, name, caps=None):
        """Create the cephx user ``client.<name>``, as an operator would.

        Its keyring is written in the cluster's directory and named in a
        ``[client.<name>]`` section of the conf, so librados finds it
        through :attr:`conf_path`.

        :param caps: ``{daemon type: cap}``; by default Cinder's (``profile
            rbd`` on mon, osd and mgr).
        :returns: the keyring's path.
        """
        caps = caps or {t: 'profile rbd' for t in ('mon', 'osd', 'mgr')}
        entity = f'client.{name}'
        path = self._path(f'ceph.{entity}.keyring')
        templates.write_keyring(path, {entity: (templates.new_key(), caps)})
        self.ceph('auth', 'import', '-i', path)
        with open(self.conf_path, 'a') as conf:
            conf.write(f'\n[{entity}]\nkeyring = {path}\n')
        return path

    def start(self):
        """Create and start the cluster; wait until PGs are active+clean.

        Does nothing if already started; a stopped cluster starts afresh.
        On failure, stops every daemon it started and keeps the directory
        (with the logs) for :meth:`stop` to remove.

        :returns: self.
        :raises SandboxError: naming what did not come up, with the tail
            of its log.
        """
        if self.started:
            return self
        missing = [b for b in BINARIES if not shutil.which(b)]
        if missing:
            raise SandboxError(reason='Ceph is not installed (missing '
                               f'{", ".join(missing)}): run tools/setup.sh')
        if self._owned:  # an earlier start failed: begin afresh
            self.stop()
        began = time.monotonic()
        self._deadline = began + self.timeout
        if not self.detach:
            processes.LIVE.add(self)
            processes.exit_on_sigterm()
        try:
            self._start()
        except BaseException:
            LOG.error('Ceph sandbox %s failed to start; stopping it',
                      self.name)
            self.stop(remove=False)
            raise
        self.started = True
        LOG.info('Ceph sandbox %s (fsid %s, mon %s) up in %.1fs in %s',
                 self.name, self.fsid, self.mon_addr,
                 time.monotonic() - began, self.base_dir)
        return self

    def _make_base_dir(self):
        """Create ``base_dir`` (or take it, empty), readable by us alone.

        The mon's store under it holds every cephx key, in files Ceph
        makes readable to all (0644): the directory must not be.
        """
        os.makedirs(self.base_dir, mode=0o700, exist_ok=True)
        if os.listdir(self.base_dir):
            raise SandboxError(reason=f'{self.base_dir} is not empty')
        os.chmod(self.base_dir, 0o700)

    def _start(self):
        self._make_base_dir()
        templates.write(self._path(processes.MARKER_FILE),
                        f'rbdmig sandbox {self.name}\n')
        self._owned = True
        for sub in ('run', 'log', 'crash', 'mgr.x', 'files'):
            os.makedirs(self._path(sub))
        self.fsid = str(uuid.uuid4())
        # A bare port would be taken for msgr2: name the protocol.
        port = processes.free_port(self.public_addr)
        self.mon_addr = f'v1:{self.public_addr}:{port}'
        templates.write(self.conf_path, templates.CONF.format(
            fsid=self.fsid, mon_addr=self.mon_addr, dir=self.base_dir,
            public_addr=self.public_addr,
            pg_num=templates.PG_NUM, objectstore=self.objectstore,
            osd_bytes=self.osd_bytes, osd_memory=units.Gi,
            mgr_disabled=templates.MGR_DISABLED) + ''.join(
                templates.DAEMON_CONF.format(type=t, dir=self.base_dir)
                for t in ('mon', 'mgr', 'osd')))
        admin = (templates.new_key(),
                 {t: 'allow *' for t in ('mon', 'osd', 'mgr', 'mds')})
        mgr = (templates.new_key(),
               {'mon': 'allow profile mgr', 'osd': 'allow *',
                'mds': 'allow *'})
        templates.write_keyring(self.admin_keyring_path,
                                {'client.admin': admin})
        templates.write_keyring(self._path('mgr.x', 'keyring'), {'mgr.x': mgr})
        # The mon's first keyring seeds its auth database.
        templates.write_keyring(self._path('mkfs.keyring'), {
            'mon.': (templates.new_key(), {'mon': 'allow *'}),
            'client.admin': admin, 'mgr.x': mgr})
        self._run('monmaptool', '--create', '--fsid', self.fsid, '--addv',
                  'a', f'[{self.mon_addr}]', self._path('monmap'))
        self._run('ceph-mon', '--conf', self.conf_path, '--mkfs', '-i', 'a',
                  '--monmap', self._path('monmap'),
                  '--keyring', self._path('mkfs.keyring'))
        os.unlink(self._path('mkfs.keyring'))
        self._spawn('mon.a', 'ceph-mon', '-i', 'a')
        client = self._wait('mon.a', 'the mon to answer', self._connect)
        try:
            # No device health scraping, hence no pool for it to wait on.
            self._command(client, 'config set', who='mgr', value='false',
                          name='mgr/devicehealth/enable_monitoring',
                          force=True)
            self._spawn('mgr.x', 'ceph-mgr', '-i', 'x')
            for _ in range(self.osd_count):
                self._create_osd(client)
            for pool in self.pools:
                self._command(client, 'osd pool create', pool=pool,
                              pg_num=templates.PG_NUM,
                              pgp_num=templates.PG_NUM)
                self._command(client, 'osd pool application enable',
                              pool=pool, app='rbd')
            self._wait('osd.0', 'the OSDs to be up',
                       lambda: self._osds_up(client))
            # The mgr serves capacity: without it, df reads zero.
            self._wait('mgr.x', 'the mgr to report capacity (df)',
                       lambda: self._command(client, 'df')['stats'][
                           'total_bytes'] > 0)
            self._wait('osd.0', 'the PGs to be active+clean',
                       lambda: self._pgs_clean(client))
        finally:
            client.shutdown()
        templates.write(self.rbdmig_conf_path, self._rbdmig_conf())

    def _rbdmig_conf(self):
        # The database of rbdmig's own CLI lives with the cluster.
        sections = {'DEFAULT': {'enabled_backends': ', '.join(self.backends),
                                'state_path': self._path('state')}}
        for backend, pool in self.backends.items():
            if pool == 'file':
                sections[backend] = {
                    'volume_driver': _DRIVERS + 'file.FileDriver',
                    'volume_backend_name': backend,
                    'file_volume_dir': self.file_volume_dir}
                continue
            sections[backend] = {
                'volume_driver': _DRIVERS + 'rbd.RBDDriver',
                'volume_backend_name': backend, 'rbd_pool': pool,
                'rbd_ceph_conf': self.conf_path, 'rbd_user': 'admin',
                'rbd_cluster_name': 'ceph'}
        return '\n'.join(f'[{name}]\n' + ''.join(f'{k} = {v}\n'
                                                 for k, v in opts.items())
                         for name, opts in sections.items())

    def signal(self, name, sig):
        """Send ``sig`` to daemon ``name`` (``osd.0``): fault injection.

        ``SIGSTOP`` pauses it (:meth:`resume` resumes it); ``SIGKILL``
        kills it (:meth:`restart` brings it back).
        """
        os.kill(self._procs[name].pid, sig)

    def resume(self, name, timeout=60):
        """Resume OSD ``name`` after ``SIGSTOP``; return once it serves I/O.

        A lone OSD paused past its PGs' read leases keeps them ``laggy``
        after ``SIGCONT``, every op parked until the next interval change
        (ceph/ceph-container#1682, Ceph tracker 80404): the OSD is marked
        down, so that it re-peers as a restarted one would, and this waits
        until it is up again and every PG is active+clean.
        """
        os.kill(self._procs[name].pid, signal.SIGCONT)
        osd_id = int(name.split('.', 1)[1])
        self._deadline = time.monotonic() + timeout
        client = self._connect()
        try:
            before = self._up_from(client, osd_id)
            self._command(client, 'osd down', ids=[str(osd_id)])
            self._wait(name, 'it to be up again after "osd down"',
                       lambda: self._up_from(client, osd_id) > before)
            self._wait(name, 'the PGs to be active+clean',
                       lambda: self._pgs_clean(client))
        finally:
            client.shutdown()

    def _up_from(self, client, osd_id):
        """The epoch OSD ``osd_id`` last came up in; 0 while it is down."""
        for osd in self._command(client, 'osd dump')['osds']:
            if osd['osd'] == osd_id:
                return osd['up_from'] if osd['up'] else 0
        raise SandboxError(reason=f'osd.{osd_id} is not in the OSD map')

    def restart(self, name):
        """Start daemon ``name`` again, once its old process has exited."""
        self._procs[name].wait(timeout=30)
        self._spawn(name, *self._cmds[name])

    def _spawn(self, name, *cmd):
        """Start a daemon in the foreground, in a session of its own."""
        self._cmds[name] = cmd
        with open(self._path('log', name + '.out'), 'ab') as out:
            self._procs[name] = subprocess.Popen(
                (*cmd, '-f', '--conf', self.conf_path),
                stdin=subprocess.DEVNULL, stdout=out,
                stderr=subprocess.STDOUT, env=processes.env(),
                cwd=self.base_dir, start_new_session=True)
        pids_file = self._path(processes.PIDS_FILE)
        templates.write(pids_file + '.tmp', json.dumps(self.pids))
        os.replace(pids_file + '.tmp', pids_file)
        LOG.debug('Sandbox %s: started %s, pid %d', self.name, name,
                  self._procs[name].pid)

    def _logs(self, name):
        return '\n'.join(processes.tail(self._path('log', name + ext))
                         for ext in ('.out', '.log'))

    def _wait(self, daemon, what, predicate):
        """Poll ``predicate`` until it returns true; return that value."""
        last = None
        while True:
            for name, proc in self._procs.items():
                if proc.poll() is not None:
                    raise SandboxError(
                        reason=f'{name} of {self.name} exited with '
                        f'{proc.returncode}\n{self._logs(name)}')
            try:
                value = predicate()
                if value:
                    return value
            except (rados.Error, SandboxError, KeyError, ValueError) as e:
                last = e
            if time.monotonic() > self._deadline:
                raise SandboxError(
                    reason=f'timed out after {self.timeout}s waiting for '
                    f'{what} of {self.name} (last error: {last})\n'
                    f'{self._logs(daemon)}')
            time.sleep(0.1)

    def _connect(self):
        return self.connect(
            timeout=max(1, min(10, int(self._deadline - time.monotonic()))))

    def _command(self, client, prefix, inbuf=b'', **args):
        """Run a mon command; return its output, decoded from JSON."""
        cmd = dict(args, prefix=prefix, format='json')
        ret, out, err = client.mon_command(json.dumps(cmd), inbuf,
                                           timeout=30)
        if ret:
            raise SandboxError(reason=f'"{prefix}" failed: {err} ({ret})')
        return json.loads(out) if out else None

    def _create_osd(self, client):
        osd_uuid, key = str(uuid.uuid4()), templates.new_key()
        osd_id = str(self._command(
            client, 'osd new', uuid=osd_uuid,
            inbuf=json.dumps({'cephx_secret': key}).encode())['osdid'])
        name = 'osd.' + osd_id
        os.makedirs(self._path(name))
        templates.write_keyring(self._path(name, 'keyring'), {name: (key, {})})
        # The key on stdin, as ceph-volume gives it: an argument would be
        # in /proc/<pid>/cmdline for every local user to read.
        self._run('ceph-osd', '--conf', self.conf_path, '-i', osd_id,
                  '--mkfs', '--keyfile', '-', '--osd-uuid', osd_uuid,
                  input=key)
        self._spawn(name, 'ceph-osd', '-i', osd_id)

    def _osds_up(self, client):
        osds = self._command(client, 'osd dump')['osds']
        return sum(o['up'] for o in osds) == self.osd_count

    def _pgs_clean(self, client):
        """True once the mon's view (``ceph -s``) has every PG clean."""
        pools = self._command(client, 'osd dump')['pools']
        pgmap = self._command(client, 'status')['pgmap']
        clean = sum(s['count'] for s in pgmap['pgs_by_state']
                    if s['state_name'] == 'active+clean')
        return pgmap['num_pgs'] == clean == sum(p['pg_num'] for p in pools)

    def stop(self, remove=True):
        """Stop the daemons this cluster started; remove its directory.

        Safe to call twice, or after a failed :meth:`start`.

        :param remove: also delete ``base_dir`` (if this cluster made it).
        :returns: None.
        :raises SandboxError: if a daemon survives SIGKILL.
        """
        processes.kill(self.pids.values(), self.conf_path,
              procs=self._procs.values())
        self._procs = {}
        processes.LIVE.discard(self)
        if self.started:
            LOG.info('Stopped Ceph sandbox %s', self.name)
        self.started = False
        if self._owned and os.path.isdir(self.base_dir):
            processes.stop_dir(self.base_dir, remove=remove)
        self._owned = self._owned and not remove
