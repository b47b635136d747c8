"""Two hosts, one fleet: ``rbdmig drain`` from two hosts on one database.

Each host is an ``rbdmig`` process in a network namespace of its own,
behind its own link to the cluster (a veth pair shaped to
:data:`LINK_MBIT` each way, :class:`rbdmig.bench.link.Link`: the host's
network card), and in a UTS namespace of its own (``unshare --uts``), so
its host name, and the ``host`` of the migrations it runs, is its own.
The cluster listens on the first link's host end; the other host reaches
it through its own link.  Both hosts read the cluster's rbdmig.conf and
an extra file naming one PostgreSQL database (:func:`conftest.
postgresql`, reached over its Unix socket), owned by a plain role.  A
host is killed at a named crash point, never by a timer; the other
host's ``rbdmig recover`` takes its moves over once Ceph and the lease
say it is gone, and resumes a generic copy (to the sandbox's file
backend, one directory of this machine both hosts share) from the
killed host's last checkpoint.
"""

import argparse
import contextlib
import hashlib
import json
import os
import random
import secrets
import signal
import subprocess
import sys
import time

import pytest
import rbd
import sqlalchemy as sa

from rbdmig import faults
from rbdmig import sandbox
from rbdmig.bench import link as thin_link
from rbdmig.cmd import context
from rbdmig.db import states
from rbdmig.migration import inventory
from tests.functional import conftest
from tests.functional import helpers

MiB = 1 << 20
GiB = 1 << 30
# Volumes drained at once (thin, 1 GiB, DATA_MIB MiB of data each).
VOLUMES = int(os.environ.get('RBDMIG_FLEET_VOLUMES', '40'))
DATA_MIB = 4
HOSTS = ('rbdmig-host-a', 'rbdmig-host-b')
BACKENDS = ('ceph-a', 'ceph-b')
# Each host's link to the cluster, each way, in Mbit/s.
LINK_MBIT = int(os.environ.get('RBDMIG_FLEET_LINK_MBIT', '200'))

LEASE = 30  # migration_lease, seconds


@pytest.fixture(scope='module')
def links():
    """{host: its network namespace and shaped link}."""
    with contextlib.ExitStack() as stack:
        # Names of their own: this process and the host's index.
        yield {host: stack.enter_context(thin_link.Link(
            LINK_MBIT, tag='%06x%02x' % (os.getpid() & 0xffffff, index),
            prefix='rbdmig-fleet-')) for index, host in enumerate(HOSTS)}


@pytest.fixture(scope='module')
def fleet_cluster(links, tmp_path_factory):
    """A sandbox cluster listening on the first host's link."""
    settings = conftest.sandbox_settings()
    settings['osd_bytes'] = max(settings['osd_bytes'], 3 << 30)
    cluster = sandbox.Cluster(tmp_path_factory.mktemp('fleet'),
                              name='fleet', backend_prefix='ceph',
                              public_addr=links[HOSTS[0]].host_ip,
                              **settings)
    try:
        yield cluster.start()
    finally:
        cluster.stop()


class Fleet(object):
    """One database, the sandbox's backends, and hosts to run commands."""

    def __init__(self, cluster, links, postgresql, tmp_path, method=None):
        self.cluster, self.links, self.tmp_path = cluster, links, tmp_path
        role = 'fleet_%s' % secrets.token_hex(4)
        password = secrets.token_hex(16)
        admin = sa.create_engine(postgresql.url,
                                 isolation_level='AUTOCOMMIT')
        with admin.connect() as conn:
            conn.execute(sa.text("CREATE ROLE %s LOGIN PASSWORD '%s'"
                                 % (role, password)))
            conn.execute(sa.text('CREATE DATABASE %s OWNER %s'
                                 % (role, role)))
        admin.dispose()
        self.extra = tmp_path / 'fleet.conf'
        # A short lease (migration_lease): a killed host's moves are
        # taken over 30 s after its last heartbeat instead of 120 s.
        # The server listens on 127.0.0.1, each namespace's own: the
        # hosts reach it over its Unix socket.
        self.extra.write_text(
            '[DEFAULT]\nmigration_lease = %d\n'
            '[database]\nconnection = postgresql+psycopg2://%s:%s@/%s'
            '?host=%s&port=%d\n' % (LEASE, role, password, role,
                                    postgresql.folder, postgresql.port))
        if method:  # rbd_migration_method of both backends
            with open(self.extra, 'a') as f:
                for backend in BACKENDS:
                    f.write('[%s]\nrbd_migration_method = %s\n'
                            % (backend, method))
        self.svc = context.load(argparse.Namespace(
            config_file=[cluster.rbdmig_conf_path, str(self.extra)]))

    def start(self, host, *args, env=None):
        """Start ``rbdmig ARGS`` as ``host``; its output goes to files."""
        name = '%s.%d' % (host, time.time_ns())
        out = open(self.tmp_path / (name + '.out'), 'w+')
        err = open(self.tmp_path / (name + '.err'), 'w+')
        proc = subprocess.Popen(
            self.links[host].wrap([
                'unshare', '--uts', 'sh', '-c',
                'hostname %s && exec "$0" -m rbdmig.cmd.main "$@"' % host,
                sys.executable, '--config-file',
                self.cluster.rbdmig_conf_path,
                '--config-file', str(self.extra)] + list(args)),
            stdin=subprocess.DEVNULL, stdout=out, stderr=err,
            env=dict(os.environ, **(env or {})))
        proc.out, proc.err = out, err
        return proc

    def wait(self, proc, timeout=900, stdout_only=False):
        """``(exit status, output)`` of a started command."""
        code = proc.wait(timeout=timeout)
        said = ''
        for f in (proc.out, proc.err):
            f.seek(0)
            said += f.read()
            f.close()
            if stdout_only:
                break
        return code, said

    def run(self, host, *args, env=None):
        return self.wait(self.start(host, *args, env=env))

    def status(self, host):
        """``rbdmig status --format json`` as ``host`` sees it."""
        code, said = self.wait(self.start(host, 'status', '--format',
                                          'json'), stdout_only=True)
        return code, json.loads(said)

    def create(self, count, cleanup, data_mib=DATA_MIB, piece_mib=1,
               slots=None):
        """``count`` volumes on ceph-a, each with ``data_mib`` MiB of data
        in scattered, aligned pieces of ``piece_mib``: {id: digest}.

        :param slots: the pieces' indices instead (in ``piece_mib``),
            the same in each volume.
        """
        drv = self.svc.drivers['ceph-a']
        made = {}
        for _ in range(count):
            record = self.svc.create('ceph-a', 1)
            cleanup.add('delete %s' % record.id, self.svc.delete, record.id)
            vol = inventory.as_volume(record)
            handle = drv.open_volume(None, vol, 'r+b')
            try:
                for slot in slots or random.Random(record.id).sample(
                        range(1024 // piece_mib), data_mib // piece_mib):
                    handle.seek(slot * piece_mib * MiB)
                    handle.write(os.urandom(piece_mib * MiB))
            finally:
                drv.close_volume(None, vol, handle)
            made[record.id] = self.digest('ceph-a', record.id)
        return made

    def pool(self, backend):
        return self.cluster.backends[backend]

    def digest(self, backend, volume):
        """sha256 of the image's content: its size, then each 1 MiB
        block holding a non-zero byte, with its index (every other byte
        reads as zero), read where librbd reports data.  On the file
        backend, the same of the volume's file."""
        if self.pool(backend) == 'file':
            return self._file_digest(backend, volume)
        client = self.cluster.connect()
        try:
            ioctx = client.open_ioctx(self.pool(backend))
            try:
                with rbd.Image(ioctx, 'volume-%s' % volume,
                               read_only=True) as image:
                    size = image.size()
                    blocks = set()

                    def found(offset, length, exists):
                        if exists:
                            blocks.update(range(
                                offset // MiB,
                                (offset + length + MiB - 1) // MiB))
                        return 0

                    image.diff_iterate(0, size, None, found)
                    sha = hashlib.sha256(b'%d' % size)
                    for block in sorted(blocks):
                        data = image.read(block * MiB, MiB)
                        if data.count(0) != len(data):
                            sha.update(b'%d:' % block + data)
                    return sha.hexdigest()
            finally:
                ioctx.close()
        finally:
            client.shutdown()

    def _file_digest(self, backend, volume):
        """:meth:`digest` of the file at ``volume``'s path on ``backend``
        (both hosts' 'files' is this machine's directory)."""
        path = self.svc.drivers[backend].local_path(
            inventory.as_volume(self.svc.db.get_volume(volume)))
        with open(path, 'rb') as f:
            sha = hashlib.sha256(b'%d' % os.fstat(f.fileno()).st_size)
            block = 0
            while data := f.read(MiB):
                if data.count(0) != len(data):
                    sha.update(b'%d:' % block + data)
                block += 1
        return sha.hexdigest()

    def copies(self, volume):
        """The backends holding an image, or a file, of ``volume``'s
        name."""
        name = 'volume-%s' % volume
        found = [b for b in BACKENDS
                 if name in self.cluster.rbd('ls', self.pool(b)).split()]
        if os.path.exists(os.path.join(self.cluster.file_volume_dir, name)):
            found.append('files')
        return found

    def leftovers(self):
        """rbdmig's tagged images and journal records in either pool, and
        files on 'files' that are not a plain volume (a generic copy's
        retired source)."""
        return helpers.rbdmig_leftovers(
            self.cluster, [self.pool(b) for b in BACKENDS]) + [
                n for n in os.listdir(self.cluster.file_volume_dir)
                if not n.startswith('volume-') or '.' in n]

    def successes(self, volumes):
        """{volume: the hosts of its successful migrations}."""
        done = {v: [] for v in volumes}
        for migration in self.svc.db.list_migrations():
            if migration.status == states.SUCCESS:
                done[migration.volume_id].append(
                    migration.host.rpartition(':')[0])
        return done

    def check(self, volumes, backend):
        """Failed invariants: one copy where the database says, the
        same data, status available, nothing left over."""
        failed = []
        for volume, before in volumes.items():
            record = self.svc.db.get_volume(volume)
            if (record.backend, self.copies(volume)) != (backend, [backend]):
                failed.append('%s: database %s, copies %s' % (
                    volume, record.backend, self.copies(volume)))
            elif self.digest(backend, volume) != before:
                failed.append('%s: data differs' % volume)
            if (record.status, record.migration_status) != (
                    'available', states.SUCCESS):
                failed.append('%s: status %s/%s' % (
                    volume, record.status, record.migration_status))
        if self.leftovers():
            failed.append('leftovers %s' % self.leftovers())
        return failed


def _two_hosts_then_one(fleet, volumes):
    """Both hosts drain ``volumes`` from ceph-a to ceph-b at once, then
    host A alone drains them back: each moved once each way, by either
    host, identical, nothing left over.  ``(two hosts' wall time, one
    host's, {host: volumes it moved})``."""
    start = time.monotonic()
    hosts = [fleet.start(host, 'drain', 'ceph-a', 'ceph-b')
             for host in HOSTS]
    ended = [fleet.wait(proc) for proc in hosts]
    two = time.monotonic() - start
    for code, said in ended:
        assert code == 0, said
        assert 'every volume moved' in said, said

    assert fleet.check(volumes, 'ceph-b') == []
    code, said = fleet.wait(fleet.start(HOSTS[1], 'list', '--format',
                                        'json'), stdout_only=True)
    assert {v['id']: v['backend'] for v in json.loads(said)} == dict.fromkeys(
        volumes, 'ceph-b')
    done = fleet.successes(volumes)
    assert all(len(hosts) == 1 for hosts in done.values()), done
    by_host = {h: sum(hosts == [h] for hosts in done.values())
               for h in HOSTS}
    assert all(by_host.values()), by_host  # both did some of the work
    assert [m for m in fleet.svc.db.list_migrations()
            if m.status != states.SUCCESS] == []

    # The same volumes, drained back by one host alone.
    start = time.monotonic()
    code, said = fleet.run(HOSTS[0], 'drain', 'ceph-b', 'ceph-a')
    one = time.monotonic() - start
    assert code == 0, said
    assert fleet.check(volumes, 'ceph-a') == []
    return two, one, by_host


def test_two_hosts_drain_one_source_each_volume_once(
        fleet_cluster, links, postgresql, tmp_path, cleanup):
    fleet = Fleet(fleet_cluster, links, postgresql, tmp_path)
    volumes = fleet.create(VOLUMES, cleanup)
    two, one, by_host = _two_hosts_then_one(fleet, volumes)
    print('\nfleet: %d volumes of %d MiB (default method, offload): two '
          'hosts %.1f s (%s), one host %.1f s, ratio %.2f' % (
              VOLUMES, DATA_MIB, two, by_host, one, two / one))


# Where each move's data crosses its host (what a move between clusters
# does): 16 MiB a volume, 640 MiB in all, ~27 s through one 200 Mbit/s
# link each way.
CROSSING_MIB = 16
# Two hosts' links carry it in half the time; with each host's fixed
# costs on top, two hosts take well under 0.8 of one host's time.
CROSSING_BOUND = 0.8


def test_each_host_adds_its_link_where_the_data_crosses_the_hosts(
        fleet_cluster, links, postgresql, tmp_path, cleanup):
    fleet = Fleet(fleet_cluster, links, postgresql, tmp_path,
                  method='extents')
    # Whole objects: 640 MiB of data, 640 MiB of objects.
    volumes = fleet.create(VOLUMES, cleanup, data_mib=CROSSING_MIB,
                           piece_mib=4)
    two, one, by_host = _two_hosts_then_one(fleet, volumes)
    print('\nfleet: %d volumes of %d MiB, extents, %d Mbit/s per host: '
          'two hosts %.1f s (%s), one host %.1f s, ratio %.2f' % (
              VOLUMES, CROSSING_MIB, LINK_MBIT, two, by_host, one,
              two / one))
    assert two / one < CROSSING_BOUND


def test_a_killed_hosts_moves_are_taken_over_and_drained_by_another(
        fleet_cluster, links, postgresql, tmp_path, cleanup):
    fleet = Fleet(fleet_cluster, links, postgresql, tmp_path)
    volumes = fleet.create(16, cleanup)
    pause = tmp_path / 'pause'
    pause.mkdir()

    # Host B waits in its first moves (watched: A's start leaves them
    # alone) until host A, moving the others, has been killed at its
    # third copy: A has work, and dies in it.
    host_b = fleet.start(HOSTS[1], 'drain', 'ceph-a', 'ceph-b',
                         env={faults.PAUSE_AT: 'engine.copying',
                              faults.PAUSE_DIR: str(pause)})
    while not (pause / 'engine.copying.1.reached').exists():
        assert host_b.poll() is None, fleet.wait(host_b)
        time.sleep(0.1)
    code, said = fleet.run(HOSTS[0], 'drain', 'ceph-a', 'ceph-b',
                           env={faults.CRASH_AT: 'engine.copied#3'})
    assert code == -signal.SIGKILL, said
    killed = time.monotonic()
    # B's recovery at once leaves every move alone: A's while Ceph still
    # sees its client and its lease is fresh (30 s), B's own (alive,
    # held).  Asked before B goes on, well inside A's lease.
    running = [m.id for m in fleet.svc.db.list_migrations(running=True)]
    code, said = fleet.run(HOSTS[1], 'recover')
    assert code == 0, said
    assert [m.id for m in fleet.svc.db.list_migrations(running=True)] == (
        running), said
    (pause / 'release').touch()
    code, said = fleet.wait(host_b)
    # A's stranded moves are another host's, not B's failures.
    assert code == 0, said
    assert 'being moved by %s' % HOSTS[0] in said, said
    stranded = [m for m in fleet.svc.db.list_migrations(running=True)]
    assert stranded and all(m.host.startswith(HOSTS[0] + ':')
                            for m in stranded), stranded
    # Any host's rbdmig status lists A's moves in Ceph, with A's name.
    code, status = fleet.status(HOSTS[1])
    assert (code, status['errors']) == (0, []), status
    assert {m['host'].split(':')[0] for m in status['migrations']} == {
        HOSTS[0]}, status

    # B's recovery takes them over once Ceph has dropped A's watch and
    # A's lease has expired.
    while fleet.svc.db.list_migrations(running=True):
        assert time.monotonic() - killed < LEASE + 90, said
        code, said = fleet.run(HOSTS[1], 'recover')
        assert code == 0, said
        time.sleep(2)
    taken = time.monotonic() - killed
    assert all(m.host.startswith(HOSTS[1] + ':')
               for m in fleet.svc.db.list_migrations()
               if m.id in {s.id for s in stranded}), said

    code, said = fleet.run(HOSTS[1], 'drain', 'ceph-a', 'ceph-b')
    assert code == 0, said
    assert fleet.check(volumes, 'ceph-b') == []
    done = fleet.successes(volumes)
    assert all(len(hosts) == 1 for hosts in done.values()), done
    code, status = fleet.status(HOSTS[1])
    assert (code, status['migrations'], status['errors']) == (
        0, [], []), status
    print('\nfleet: host A killed at engine.copied#3 with %d move(s) '
          'running; host B took them over after %.0f s' % (
              len(stranded), taken))


def test_a_killed_hosts_generic_copy_resumes_on_another_from_its_checkpoint(
        fleet_cluster, links, postgresql, tmp_path, cleanup):
    fleet = Fleet(fleet_cluster, links, postgresql, tmp_path)
    chunk = fleet.svc.drivers['ceph-a'].configuration.safe_get(
        'volume_copy_chunk_size')
    every = 16 * chunk  # a checkpoint each 16 chunks (copy.copy_volume)
    # A 4 MiB piece in the middle of each checkpoint's stretch of the
    # 1 GiB volume: what host A copies and what host B does both hold
    # data, 64 MiB in all.
    volumes = fleet.create(1, cleanup, piece_mib=4, slots=[
        (start + every // 2) // (4 * MiB) for start in range(0, GiB, every)])
    (volume,) = volumes

    # Host A drains ceph-a into the file backend (a generic copy, through
    # the host), and is killed just after writing its third checkpoint.
    code, said = fleet.run(HOSTS[0], 'drain', 'ceph-a', 'files',
                           env={faults.CRASH_AT: 'service.checkpoint#3'})
    assert code == -signal.SIGKILL, said
    killed = time.monotonic()
    (dead,) = fleet.svc.db.list_migrations(running=True)
    assert (dead.path, dead.host.rpartition(':')[0],
            dead.checkpoint_offset, dead.checkpoint_chunk_size) == (
        states.GENERIC, HOSTS[0], 3 * every, chunk), dead

    # Host B's recovery, again until A's lease lapsed, takes the copy
    # over and resumes it where A's checkpoint says.  Its own checkpoints
    # are counted: a copy resumed at A's reaches only the ones past it,
    # one started again from 0 all of them (whatever the outcome says).
    points = tmp_path / 'points'
    while fleet.svc.db.list_migrations(running=True):
        assert time.monotonic() - killed < LEASE + 90, said
        code, said = fleet.run(HOSTS[1], 'recover',
                               env={faults.RECORD: str(points)})
        assert code == 0, said
        time.sleep(2)
    taken = time.monotonic() - killed
    assert 'migration %d: resumed at %.1f MiB and completed' % (
        dead.id, 3 * every / MiB) in said, said
    reached = points.read_text().split().count('service.checkpoint')
    assert reached == (GiB - 3 * every) // every, reached

    assert fleet.successes(volumes) == {volume: [HOSTS[1]]}
    assert [m.id for m in fleet.svc.db.list_migrations()] == [dead.id]
    assert fleet.check(volumes, 'files') == []
    print('\nfleet: host A killed at service.checkpoint#3 of a generic '
          'copy to files; host B resumed it at %d MiB after %.0f s' % (
              3 * every // MiB, taken))
