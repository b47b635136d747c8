"""Every crash point of the service's paths, killed and recovered.

The engine's points are enumerated per method in ``test_faults``; these
are the paths the migration service adds around them: the generic copy
between two RBD pools, the fallback to it when the destination is not
RBD (RBD to file, file to RBD), and the assisted move as the service
runs it, with the engine's points where rbdmig's database must follow
it (``ENGINE``; test_faults kills each method at every point).  For each path a
first run lists the points it reaches (``RBDMIG_CRASH_RECORD``).  Then,
for each point, ``rbdmig migrate`` SIGKILLs itself there
(``RBDMIG_CRASH_AT``), ``rbdmig recover`` runs, and the invariants are
checked: the volume reads identically where rbdmig's database says it
is, no other copy of it and no leftover exists, its status is sane, and
it moves again.  On top, kills at seeded random reaches of those points
(any occurrence, not just the first).  Each cell goes into the
crash-point table (``crash_table``).
"""

import argparse
import hashlib
import json
import os
import random
import re
import signal
import time

import pytest

from rbdmig import faults
from rbdmig.ceph import liveness
from rbdmig.cmd import context
from rbdmig.migration import inventory
from tests.functional import helpers
from tests.functional.test_cli import CLI
from tests.functional.test_cli import MiB

# path: (source backend, destination backend, extra migrate arguments)
PATHS = {
    'generic RBD to RBD': ('ceph-a', 'ceph-b', ('--method', 'generic')),
    'fallback RBD to file': ('ceph-a', 'files', ()),
    'fallback file to RBD': ('files', 'ceph-a', ()),
    'assisted by the service': ('ceph-a', 'ceph-b', ()),
}
# The engine's points killed here too, where rbdmig's database must
# follow the engine: before the copy is verified, once it holds the
# name, once the source goes, after the journal's end.
ENGINE = ('engine.copied', 'engine.placed', 'engine.removing',
          'engine.finished')
# Kills at random reaches, per path, on top of one at each point.
RANDOM_KILLS = 1
SEED = int(os.environ.get('RBDMIG_CRASH_SEED', '13'))


@pytest.fixture(scope='module')
def service_cli(cluster_registry, tmp_path_factory):
    cluster = cluster_registry.start(tmp_path_factory.mktemp('svc'),
                                     name='svc', backend_prefix='ceph',
                                     osd_bytes=3 << 30)
    cli = CLI(cluster, tmp_path_factory.mktemp('conf'))
    # What is not the killed move or ``rbdmig recover`` runs in this
    # process, on the same database: a process start less per step.
    cli.svc = context.load(argparse.Namespace(
        config_file=[cluster.rbdmig_conf_path, str(cli.extra)]))
    return cli


def _digest(cli, backend, volume):
    drv = cli.svc.drivers[backend]
    vol = inventory.as_volume(cli.svc.db.get_volume(volume))
    sha = hashlib.sha256()
    handle = drv.open_volume(None, vol, 'rb')
    try:
        while chunk := handle.read(4 * MiB):
            sha.update(chunk)
    finally:
        drv.close_volume(None, vol, handle)
    return sha.hexdigest()


def _new(cli, backend):
    """A 1 GiB volume with 24 MiB of data on ``backend``; id, sha256."""
    record = cli.svc.create('ceph-a', 1)
    drv = cli.svc.drivers['ceph-a']
    vol = inventory.as_volume(record)
    handle = drv.open_volume(None, vol, 'r+b')
    try:
        for slot in random.Random(record.id).sample(range(256), 6):
            handle.seek(slot * 4 * MiB)
            handle.write(os.urandom(4 * MiB))
    finally:
        drv.close_volume(None, vol, handle)
    if backend != 'ceph-a':
        cli.svc.migrate(record.id, backend)
    return record.id, _digest(cli, backend, record.id)


def _copies(cli, volume):
    """The backends holding an image or file of ``volume``'s name."""
    name = 'volume-%s' % volume
    found = [b for b in ('ceph-a', 'ceph-b')
             if name in cli.cluster.rbd('ls', cli.pool(b)).split()]
    if os.path.exists(os.path.join(cli.cluster.file_volume_dir, name)):
        found.append('files')
    return found


def _leftovers(cli):
    """rbdmig's tagged names and journal records in either pool, and
    files that are not a plain volume."""
    found = helpers.rbdmig_leftovers(
        cli.cluster, [cli.pool(b) for b in ('ceph-a', 'ceph-b')])
    found += [n for n in os.listdir(cli.cluster.file_volume_dir)
              if not n.startswith('volume-') or '.' in n]
    return found


def _points(cli, path, tmp_path):
    """The points one whole move of ``path`` reaches, in order, each
    with its occurrence (``point#N``)."""
    src, dst, args = PATHS[path]
    volume, _ = _new(cli, src)
    record = tmp_path / 'points'
    cli('migrate', volume, dst, *args, '--wait',
        env={faults.RECORD: str(record)})
    seen, points = {}, []
    for point in record.read_text().split():
        if point.startswith('engine.') and point not in ENGINE:
            continue  # test_faults kills each method at every one
        seen[point] = seen.get(point, 0) + 1
        points.append('%s#%d' % (point, seen[point]))
    return points


def _kill_and_recover(cli, path, point):
    """Kill a move of ``path`` at ``point``, recover; the failed
    invariants (an empty list when it held) and the recovery's words."""
    src, dst, args = PATHS[path]
    volume, before = _new(cli, src)
    killed = cli('migrate', volume, dst, *args, '--wait', check=False,
                 env={faults.CRASH_AT: point})
    if killed.returncode != -signal.SIGKILL:
        return ['not killed (exit %d)' % killed.returncode], ''
    said = cli('recover', check=False)
    failed = [] if said.returncode == 0 else [
        'recover exit %d: %s' % (said.returncode, said.stderr.strip())]
    found = cli.svc.show(volume)
    where = found['backend']
    if _copies(cli, volume) != [where]:
        failed.append('copies on %s, database says %s' % (
            _copies(cli, volume), where))
    elif _digest(cli, where, volume) != before:
        failed.append('data differs on %s' % where)
    if _leftovers(cli):
        failed.append('leftovers %s' % _leftovers(cli))
    if (found['status'], found['migration_status']) not in (
            ('available', 'success'), ('available', 'error')):
        failed.append('status %s/%s' % (found['status'],
                                        found['migration_status']))
    if not failed:
        back = src if where == dst else dst
        try:
            cli.svc.migrate(volume, back)
        except Exception as err:  # noqa: BLE001 - a cell of the table
            failed.append('it did not move again: %s' % err)
        else:
            if _digest(cli, back, volume) != before:
                failed.append('moved again, but its data differs')
    words = said.stdout.strip().splitlines()
    outcome = words[-1].split(': ', 1)[-1] if words else 'nothing to do'
    return failed, '%s; on %s' % (outcome[:60], where)


@pytest.mark.parametrize('path', list(PATHS))
def test_every_service_crash_point_is_recovered(service_cli, path,
                                                crash_table, tmp_path):
    cli = service_cli
    points = _points(cli, path, tmp_path)
    assert points, 'a move reached no crash point'
    if PATHS[path][2] or 'file' in path:  # a generic copy: it spans
        assert 'service.checkpoint#2' in points, points  # checkpoints
    firsts = [p for p in points if p.endswith('#1')]
    extra = random.Random('%s/%s' % (SEED, path)).sample(
        [p for p in points if not p.endswith('#1')] or points,
        min(RANDOM_KILLS, len(points)))
    failures = {}
    for point in firsts + [p for p in extra if p not in firsts]:
        failed, cell = _kill_and_recover(cli, path, point)
        label = point[:-2] if point.endswith('#1') else point
        crash_table(path, label, '%s%s' % (
            cell, ' **FAILED**: %s' % '; '.join(failed) if failed else ''),
            table='service')
        if failed:
            failures[point] = failed
    assert not failures, json.dumps(failures, indent=1)


def test_a_resumed_copy_fences_its_killed_runner_instead_of_waiting(
        service_cli):
    """The killed runner still holds the copy's exclusive lock, as Ceph
    sees it, until its watch lapses: librbd's first write of the resumed
    copy waited that long.  Recovery breaks the lock first, blocklisting
    the runner (were it not gone, it could write no more)."""
    cli = service_cli
    src, dst, args = PATHS['generic RBD to RBD']
    volume, before = _new(cli, src)
    killed = cli('migrate', volume, dst, *args, '--wait', check=False,
                 env={faults.CRASH_AT: 'service.checkpoint#1'})
    assert killed.returncode == -signal.SIGKILL, killed.stderr

    start = time.monotonic()
    said = cli('recover')
    took = time.monotonic() - start

    (broke,) = [line for line in said.stderr.splitlines()
                if 'Breaking the lock' in line]
    runner = re.search(r'the lock (\S+) holds on volume-', broke).group(1)
    assert runner in cli.cluster.ceph('osd', 'blocklist', 'ls')
    assert took < liveness.WATCH_TIMEOUT, (took, said.stderr)
    assert cli.svc.show(volume)['backend'] == dst
    assert _copies(cli, volume) == [dst]
    assert _digest(cli, dst, volume) == before
    assert _leftovers(cli) == []
