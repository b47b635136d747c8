"""The admin CLI, as an operator uses it: subprocesses on a real cluster.

Each test gets its own sandbox cluster (and so its own database under
the sandbox's ``state_path``); an extra config file slows generic copies
down (``volume_copy_bps_limit``) where a test must watch one in flight.
"""

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

    def __call__(self, *args, debug=False, check=True, timeout=300):
        done = subprocess.run(self.args(*args, debug=debug),
                              capture_output=True, text=True,
                              timeout=timeout)
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


def test_a_migration_watched_from_a_second_process(cli):
    cli.configure(SLOW)
    volume, before = cli.create(mib=256)

    accepted = cli('migrate', volume, 'ceph-b', '--method', 'generic')
    assert accepted.stdout.startswith('accepted: migration 1 moves %s '
                                      'from ceph-a to ceph-b.' % volume)
    seen = []

    def finished():
        found = cli.show(volume)
        if found['progress'] and found['progress']['percent'] is not None:
            seen.append(found['progress']['percent'])
        return found['migration_status'] in ('success', 'error')

    _until(finished, timeout=120)
    found = cli.show(volume)
    assert found['migration_status'] == 'success', found
    assert found['backend'] == 'ceph-b'
    assert seen == sorted(seen) and seen[-1] == 100.0
    assert len(set(seen)) >= 3  # it rose, seen from another process
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


def test_a_killed_generic_copy_resumes_where_it_was(cli):
    cli.configure(SLOW)
    volume, before = cli.create(mib=512)
    cli('migrate', volume, 'ceph-b', '--method', 'generic')

    def checkpointed():
        progress = cli.show(volume)['progress']
        return progress and progress['checkpoint'] and (
            progress['checkpoint'] >= 128 * MiB)

    _until(checkpointed, 60)
    progress = cli.show(volume)['progress']
    host, pid = progress['host'].rsplit(':', 1)
    os.kill(int(pid), signal.SIGKILL)
    _until(lambda: not os.path.exists('/proc/%s' % pid), 10)
    mark = cli.show(volume)['progress']['checkpoint']

    cli.configure('')  # no longer slowed down
    done = cli('recover')

    assert 'resumed at %.1f MiB' % (mark / MiB) in done.stdout
    found = cli.show(volume)
    assert found['migration_status'] == 'success'
    assert found['backend'] == 'ceph-b'
    assert cli.digest('ceph-b', volume) == before


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
