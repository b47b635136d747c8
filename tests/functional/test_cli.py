"""The admin CLI, as an operator uses it: subprocesses on a real cluster.

Each test gets its own sandbox cluster (and so its own database under
the sandbox's ``state_path``); an extra config file slows generic copies
down (``volume_copy_bps_limit``) where a test must watch one in flight.
A command is killed at a named crash point (``RBDMIG_CRASH_AT``,
:mod:`rbdmig.faults`), never by a timer racing it.
"""

import argparse
import contextlib
import hashlib
import json
import os
import pty
import signal
import subprocess
import sys
import time

import pytest
import rbd

from rbdmig import exception
from rbdmig import faults
from rbdmig.cmd import context

MiB = 1 << 20


class CLI(object):
    """``rbdmig --config-file <sandbox conf> [--config-file extra] ...``."""

    def __init__(self, cluster, tmp_path):
        self.cluster = cluster
        self.extra = tmp_path / 'extra.conf'
        self.extra.write_text('')

    def configure(self, text):
        self.extra.write_text(text)

    def args(self, *args, debug=False):
        return ([sys.executable, '-m', 'rbdmig.cmd.main'] +
                (['--debug'] if debug else []) +
                ['--config-file', self.cluster.rbdmig_conf_path,
                 '--config-file', str(self.extra)] + list(args))

    def __call__(self, *args, debug=False, check=True, timeout=300,
                 env=None):
        """Run a command; ``env`` adds to this process's environment
        (``RBDMIG_CRASH_AT``: the command kills itself at that point)."""
        done = subprocess.run(self.args(*args, debug=debug),
                              capture_output=True, text=True,
                              timeout=timeout,
                              env=dict(os.environ, **(env or {})))
        if check and done.returncode:
            raise AssertionError('rbdmig %s: exit %d\n%s%s' % (
                ' '.join(args), done.returncode, done.stdout, done.stderr))
        return done

    def show(self, volume):
        return json.loads(self('show', volume, '--format', 'json').stdout)

    def create(self, backend='ceph-a', size=1, mib=64):
        """A volume with ``mib`` MiB of random data; its id and sha256."""
        volume = self('create', '--backend', backend, '--size',
                      str(size)).stdout.strip()
        if mib:
            self.cluster.rbd('bench', '--io-type', 'write', '--io-size',
                             '4M', '--io-total', '%dM' % mib,
                             '--io-pattern', 'rand',
                             '%s/volume-%s' % (self.pool(backend), volume))
        return volume, self.digest(backend, volume)

    def pool(self, backend):
        return self.cluster.backends[backend]

    def digest(self, backend, volume):
        sha = hashlib.sha256()
        name = 'volume-%s' % volume
        if backend == 'files':
            with open(os.path.join(self.cluster.file_volume_dir, name),
                      'rb') as f:
                while chunk := f.read(4 * MiB):
                    sha.update(chunk)
            return sha.hexdigest()
        client = self.cluster.connect()
        try:
            ioctx = client.open_ioctx(self.pool(backend))
            with rbd.Image(ioctx, name, read_only=True) as image:
                for offset in range(0, image.size(), 4 * MiB):
                    sha.update(image.read(offset, 4 * MiB))
            ioctx.close()
        finally:
            client.shutdown()
        return sha.hexdigest()


@pytest.fixture
def cli(cluster_registry, tmp_path_factory):
    cluster = cluster_registry.start(tmp_path_factory.mktemp('cli'),
                                     name='cli', backend_prefix='ceph',
                                     osd_bytes=3 << 30)
    return CLI(cluster, tmp_path_factory.mktemp('conf'))


SLOW = '[ceph-a]\nvolume_copy_bps_limit = %d\n' \
       'migration_progress_report_interval = 1\n' % (64 * MiB)


def _until(predicate, timeout=60):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, 'not reached in %d s' % timeout
        time.sleep(0.2)


def test_a_migration_watched_from_a_second_process(cli, tmp_path):
    # The migrating process waits at its first three checkpoints
    # (``RBDMIG_PAUSE_AT``) while this one reads the record: each look
    # is at a step known to be reached, never a guess at how far a timer
    # let the copy get.  While it waits, its reporter keeps recording
    # (every second): the record soon covers the checkpoint.
    cli.configure('[ceph-a]\nmigration_progress_report_interval = 1\n')
    volume, before = cli.create(mib=256)
    pauses = tmp_path / 'pauses'
    pauses.mkdir()

    accepted = cli('migrate', volume, 'ceph-b', '--method', 'generic',
                   env={faults.PAUSE_AT: 'service.checkpoint',
                        faults.PAUSE_DIR: str(pauses)})
    assert accepted.stdout.startswith('accepted: migration 1 moves %s '
                                      'from ceph-a to ceph-b.' % volume)
    seen = []

    def recorded():
        found = cli.show(volume)['progress']
        if (found['checkpoint'] is None or found['bytes_done'] is None or
                found['bytes_done'] < found['checkpoint']):
            return None
        return found

    try:
        for step in (1, 2, 3):
            _until(lambda: (pauses / ('service.checkpoint.%d.reached'
                                      % step)).exists(), timeout=120)
            _until(recorded, timeout=30)
            found = recorded()
            assert found['status'] == 'migrating', found
            seen.append((found['checkpoint'], found['percent']))
            (pauses / ('service.checkpoint.%d.go' % step)).touch()
    finally:
        (pauses / 'release').touch()

    _until(lambda: cli.show(volume)['migration_status'] in (
        'success', 'error'), timeout=120)
    found = cli.show(volume)
    assert found['migration_status'] == 'success', found
    assert found['backend'] == 'ceph-b'
    # Each pause at the next checkpoint (every 16 chunks of 4 MiB); the
    # percent never falls (it may stand still where a hole spans two).
    assert [mark for mark, _ in seen] == [64 * MiB, 128 * MiB,
                                          192 * MiB], seen
    percents = [percent for _, percent in seen]
    assert percents == sorted(percents) and percents[-1] < 100.0, seen
    assert found['progress']['percent'] == 100.0
    assert cli.digest('ceph-b', volume) == before


def _on_a_terminal(args, timeout=120):
    """Run ``args`` with stdout on a pseudo-terminal; (exit, output)."""
    leader, follower = pty.openpty()
    child = subprocess.Popen(args, stdout=follower, stderr=subprocess.PIPE)
    os.close(follower)
    output = b''
    try:
        while chunk := _read(leader):
            output += chunk
        child.wait(timeout=timeout)
    finally:
        os.close(leader)
        child.stderr.close()
    # The terminal turns each \n into \r\n; a bar's frames start with \r.
    return child.returncode, output.decode().replace('\r\n', '\n')


def _read(fd):
    try:
        return os.read(fd, 65536)
    except OSError:  # EIO: the child closed the terminal
        return b''


def test_wait_on_a_terminal_draws_a_bar_to_the_end(cli):
    volume, before = cli.create(mib=256)

    code, shown = _on_a_terminal(cli.args('migrate', volume, 'ceph-b',
                                          '--wait'))

    assert code == 0, shown
    frames = shown.split('\r')
    assert frames[0].startswith('accepted: migration 1 moves %s' % volume)
    last, status = frames[-1].rstrip().split('\n')
    assert last.startswith('[%s] 100.0%% (1024.0 MiB of 1024.0 MiB' % (
        '#' * 30))
    assert status == '%s: success on ceph-b' % volume
    assert cli.show(volume)['backend'] == 'ceph-b'
    assert cli.digest('ceph-b', volume) == before


def test_notifications_go_out_in_order(cli):
    cli.configure('[oslo_messaging_notifications]\ndriver = log\n'
                  '[ceph-a]\nmigration_progress_report_interval = 1\n'
                  'volume_copy_bps_limit = %d\n' % (64 * MiB))
    volume, _ = cli.create(mib=128)

    done = cli('migrate', volume, 'ceph-b', '--method', 'generic', '--wait',
               debug=True)

    events = []
    for line in done.stderr.splitlines():
        if 'oslo.messaging.notification.volume.migration' in line:
            body = json.loads(line[line.index('{'):])
            events.append((body['event_type'], body['payload']))
    kinds = [kind for kind, _ in events]
    assert kinds[0] == 'volume.migration.start'
    assert kinds[-1] == 'volume.migration.end'
    assert set(kinds[1:-1]) == {'volume.migration.progress'}
    assert len(kinds) >= 4
    start, end = events[0][1], events[-1][1]
    assert start['volume_id'] == volume and start['method'] == 'generic'
    assert (start['source_backend'], start['destination_backend']) == (
        'ceph-a', 'ceph-b')
    assert end['percent'] == 100.0 and end['bytes_total'] == 1 << 30
    percents = [payload['percent'] for _, payload in events]
    assert percents == sorted(percents)
    assert all(body['publisher_id'] == 'rbdmig.%s' % os.uname().nodename
               for body in [json.loads(line[line.index('{'):])
                            for line in done.stderr.splitlines()
                            if 'oslo.messaging.notification' in line])


def _nothing_changed(cli, volume, before):
    found = cli.show(volume)
    assert found['backend'] == 'ceph-a' and found['status'] == 'available'
    assert cli.digest('ceph-a', volume) == before
    return found


def test_rejected_requests_change_nothing(cli):
    volume, before = cli.create(mib=128)

    same = cli('migrate', volume, 'ceph-a', check=False)
    assert same.returncode == 3
    assert same.stderr.strip().endswith('it is on ceph-a already.')
    assert _nothing_changed(cli, volume, before)['progress'] is None

    cli.cluster.ceph('osd', 'pool', 'set-quota', 'volumes-b', 'max_bytes',
                     str(64 * MiB))
    try:
        _until(lambda: cli.show(volume) and json.loads(cli(
            'backends', '--format', 'json').stdout)[1][
                'total_capacity_gb'] < 1)
        big = cli('migrate', volume, 'ceph-b', check=False)
    finally:
        cli.cluster.ceph('osd', 'pool', 'set-quota', 'volumes-b',
                         'max_bytes', '0')
    assert big.returncode == 3
    assert 'of data and the destination offers' in big.stderr
    assert len(big.stderr.strip().splitlines()) == 1
    assert _nothing_changed(cli, volume, before)['progress'] is None

    cli.configure(SLOW)
    cli('migrate', volume, 'ceph-b', '--method', 'generic')
    again = cli('migrate', volume, 'files', check=False)
    assert again.returncode == 3
    assert 'a migration of it is running' in again.stderr
    _until(lambda: cli.show(volume)['migration_status'] == 'success', 120)


def test_two_concurrent_migrations_one_is_refused(cli):
    volume, before = cli.create(mib=128)
    both = [subprocess.Popen(cli.args('migrate', volume, 'ceph-b', '--wait'),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True) for _ in range(2)]
    codes = sorted(p.wait(timeout=300) for p in both)
    assert codes == [0, 3]
    assert cli.show(volume)['backend'] == 'ceph-b'
    assert cli.digest('ceph-b', volume) == before


def test_the_generic_round_trip_ceph_file_ceph(cli):
    volume, before = cli.create(mib=96)
    cli('migrate', volume, 'files', '--wait')
    assert cli.show(volume)['backend'] == 'files'
    assert cli.digest('files', volume) == before
    path = os.path.join(cli.cluster.file_volume_dir, 'volume-' + volume)
    assert os.stat(path).st_blocks * 512 < 200 * MiB  # thin
    cli('migrate', volume, 'ceph-a', '--wait')
    assert cli.show(volume)['backend'] == 'ceph-a'
    assert cli.digest('ceph-a', volume) == before
    assert not os.path.exists(path)


def test_drain_moves_every_volume_two_at_a_time(cli):
    volumes = dict(cli.create(mib=32) for _ in range(4))

    done = cli('drain', 'ceph-a', 'ceph-b', '--parallel', '2')

    lines = done.stdout.strip().splitlines()
    assert lines[-1] == 'ceph-a drained into ceph-b: every volume moved'
    assert sorted(line.split(':')[0] for line in lines[:-1]) == sorted(
        volumes)
    listed = json.loads(cli('list', '--format', 'json').stdout)
    assert {v['backend'] for v in listed} == {'ceph-b'}
    for volume, before in volumes.items():
        assert cli.digest('ceph-b', volume) == before


def _killed_at(cli, volume, point, *args):
    """``rbdmig migrate --wait`` that SIGKILLs itself at crash ``point``."""
    done = cli('migrate', volume, *args, '--wait', check=False,
               env={faults.CRASH_AT: point})
    assert done.returncode == -signal.SIGKILL, (
        'not killed at %s: exit %d\n%s%s' % (point, done.returncode,
                                             done.stdout, done.stderr))
    return cli.show(volume)


def test_a_killed_generic_copy_resumes_where_it_was(cli):
    # Killed at its second checkpoint, a named point, never by a timer
    # racing the copy (issue 13, defect 14).
    volume, before = cli.create(mib=256)

    found = _killed_at(cli, volume, 'service.checkpoint#2', 'ceph-b',
                       '--method', 'generic')

    assert found['migration_status'] == 'migrating'
    mark = found['progress']['checkpoint']
    assert 0 < mark < 1 << 30
    done = cli('recover')
    assert 'resumed at %.1f MiB and completed' % (mark / MiB) in done.stdout
    found = cli.show(volume)
    assert found['migration_status'] == 'success'
    assert found['backend'] == 'ceph-b'
    assert cli.digest('ceph-b', volume) == before
    assert 'volume-%s' % volume not in cli.cluster.rbd(
        'ls', 'volumes-a').split()


# Where a generic move dies while its source goes: before its removal,
# inside librbd's removal (data objects partly gone, the image still
# listed), and after it.
COMPLETING = ['service.completing', 'service.remove_source.before',
              'rbd.remove#3', 'service.remove_source.after']


def test_a_generic_move_killed_while_completing_is_finished(cli):
    # Issue 13, defect 1: recovery resumed such a move as a copy, and
    # deleted the copy when the removed source would not open.
    for point in COMPLETING:
        volume, before = cli.create(mib=64)

        found = _killed_at(cli, volume, point, 'ceph-b', '--method',
                           'generic')

        assert found['migration_status'] == 'completing', point
        retired = [n for n in cli.cluster.rbd('ls', 'volumes-a').split()
                   if n.startswith('volume-%s.rbdmig-generic-' % volume)]
        if point.startswith('rbd.remove'):
            # librbd died removing it: partly removed, still listed,
            # under the name it was retired to before its last check.
            assert retired and retired[0].endswith('.retired'), point
        started = time.monotonic()
        done = cli('recover')
        took = time.monotonic() - started
        if point.startswith('rbd.remove'):
            # The killed remover's lock is broken, not waited out (the
            # OSDs' watch timeout, 30 s, measured before the fence).
            assert 'Breaking the lock' in done.stderr, done.stderr
            assert took < 20, took
        assert 'completed on ceph-b (the source was removed)' in \
            done.stdout, (point, done.stdout)
        found = cli.show(volume)
        assert (found['migration_status'], found['backend'],
                found['status']) == ('success', 'ceph-b', 'available')
        assert cli.digest('ceph-b', volume) == before, point
        assert [n for n in cli.cluster.rbd('ls', 'volumes-a').split()
                if n.startswith('volume-%s' % volume)] == [], point
        listed = [v['id'] for v in json.loads(
            cli('list', '--format', 'json').stdout)]
        assert listed.count(volume) == 1
        # and it moves again
        cli('migrate', volume, 'ceph-a', '--method', 'generic', '--wait')
        assert cli.digest('ceph-a', volume) == before, point
        assert 'volume-%s' % volume not in cli.cluster.rbd(
            'ls', 'volumes-b').split(), point


def _service(cli):
    """The migration service in this process, on the CLI's database."""
    return context.load(argparse.Namespace(
        config_file=[cli.cluster.rbdmig_conf_path, str(cli.extra)]))


@contextlib.contextmanager
def _opened_at(cli, volume, point, monkeypatch):
    """Open ``volume``'s image read-write (a watcher, as a client) when
    the service reaches crash ``point``; close it on leaving."""
    client = cli.cluster.connect()
    ioctx = client.open_ioctx(cli.pool('ceph-a'))
    opened = []

    def hook(name):
        if name == point and not opened:
            opened.append(rbd.Image(ioctx, 'volume-%s' % volume))

    monkeypatch.setattr(faults.POINTS, 'hook', hook)
    try:
        yield opened
    finally:
        monkeypatch.setattr(faults.POINTS, 'hook', None)
        for image in opened:
            image.close()
        ioctx.close()
        client.shutdown()


def _ended_with_the_source(cli, svc, volume, before, reason):
    found = cli.show(volume)
    assert (found['backend'], found['status'],
            found['migration_status']) == ('ceph-a', 'available', 'error')
    assert reason in found['progress']['error']
    assert 'source is intact' in found['progress']['error']
    assert cli.digest('ceph-a', volume) == before
    assert cli.cluster.rbd('ls', 'volumes-b').split() == []
    assert [v.id for v in svc.db.list_volumes(include_hidden=True)] == [
        volume]


def test_a_client_opening_the_source_ends_the_move_without_a_copy(
        cli, monkeypatch):
    # Issue 13, defect 2: the assisted path refused a source a client
    # had opened, and the service copied the same live volume anyway.
    volume, before = cli.create(mib=64)
    svc = _service(cli)

    with _opened_at(cli, volume, 'service.migrating', monkeypatch) as seen:
        with pytest.raises(exception.MigrationRefused, match='open by'):
            svc.migrate(volume, 'ceph-b', force=True)
        assert seen

    _ended_with_the_source(cli, svc, volume, before, 'open by 1 client')
    assert svc.db.latest_migration(volume).path is None  # no copy at all


def test_a_client_opening_the_source_mid_copy_keeps_the_source(
        cli, monkeypatch):
    # The generic copy of a source a client opens at its first checkpoint
    # never replaces it: the client may write to it.
    volume, before = cli.create(mib=128)
    svc = _service(cli)

    with _opened_at(cli, volume, 'service.checkpoint', monkeypatch) as seen:
        with pytest.raises(exception.MigrationError,
                           match='a client opened it during the copy'):
            svc.migrate(volume, 'ceph-b', method='generic')
        assert seen

    _ended_with_the_source(cli, svc, volume, before, 'a client opened it')


def test_import_adopts_existing_images(cli):
    cli.cluster.rbd('create', '--size', '2G', 'volumes-a/legacy-image')
    cli.cluster.rbd('create', '--size', '100M',
                    'volumes-a/volume-12345678-1234-1234-1234-123456789abc')
    done = cli('import', 'ceph-a')
    assert done.stdout.strip().endswith('2 image(s) adopted from ceph-a')
    listed = {v['name']: v for v in json.loads(
        cli('list', '--format', 'json').stdout)}
    assert listed['legacy-image']['size'] == 2
    assert listed['volume-12345678-1234-1234-1234-123456789abc'][
        'id'] == '12345678-1234-1234-1234-123456789abc'
    assert cli('import', 'ceph-a').stdout.strip().endswith(
        '0 image(s) adopted from ceph-a')


def test_import_never_adopts_an_image_tagged_as_a_migrations_copy(cli):
    # librbd's own metadata: the tag a move's copy carries until the
    # move ends (an image without it answers KeyError, as the fake does).
    cli.cluster.rbd('create', '--size', '100M', 'volumes-b/tagged-copy')
    cli.cluster.rbd('image-meta', 'set', 'volumes-b/tagged-copy',
                    'rbdmig.migration', 'a-migration-id')
    cli.cluster.rbd('create', '--size', '100M', 'volumes-b/plain-image')
    done = cli('import', 'ceph-b')
    assert done.stdout.strip().endswith('1 image(s) adopted from ceph-b')
    assert 'plain-image' in done.stdout and 'tagged-copy' not in done.stdout
    assert 'it is the copy of migration a-migration-id' in done.stderr
    # Nothing left for the module's later tests.
    (adopted,) = [line.split()[1] for line in done.stdout.splitlines()
                  if line.startswith('adopted ')]
    cli('delete', adopted)
    cli.cluster.rbd('rm', 'volumes-b/tagged-copy')
