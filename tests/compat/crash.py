"""Kill a real cinder-volume mid-migration, restart it, check the volume.

:func:`kill_at` runs :mod:`tests.compat.crash_volume` (a child
cinder-volume on the same cinder.conf and database) with
``RBDMIG_CRASH_AT``; :func:`restart` runs what cinder-volume runs when it
starts again, in this process's services; :func:`check` asserts the
invariants of issue 13: the data where Cinder's row says, nothing of the
volume's name anywhere else, a sane row.
"""

import contextlib
import os
import pathlib
import signal
import subprocess
import sys

import rados

from rbdmig import faults
from rbdmig.ceph import journal
from tests.compat import crash_volume
from tests.compat import images

ROOT = pathlib.Path(__file__).resolve().parents[2]
# Statuses a restarted cinder-volume may leave: Cinder's after a failed
# (or successful) migration, never one that says it still runs.
SETTLED = (None, 'error', 'success')


class PointNotReached(AssertionError):
    """The child finished without reaching its crash point."""


def run(cinder, volume, backend, record_path, crash_at=None,
        timeout=300, conf_path=None, retype=False):
    """Migrate ``volume`` to ``backend`` in a child cinder-volume.

    :param crash_at: the point the child is killed at (``name#N``: the
        Nth time); None lets it finish.
    :param conf_path: the child's cinder.conf (another ``host`` of the
        same database); by default ``cinder``'s.
    :param retype: retype it to ``backend``'s volume type instead (a
        retype that needs a migration).
    :returns: ``(child, reached)``: the ``CompletedProcess`` and the
        points it reached, in order.
    """
    args, kwargs = _child(cinder, volume, backend, record_path, conf_path,
                          {faults.CRASH_AT: crash_at} if crash_at else {},
                          retype)
    child = subprocess.run(args, capture_output=True, text=True,
                           timeout=timeout, **kwargs)
    return child, reached_points(record_path)


def start(cinder, volume, backend, record_path, env, conf_path=None):
    """As :func:`run`, the child left running (a ``Popen``, output to
    files beside ``record_path``): ``env`` adds to its environment, e.g.
    where to pause (``RBDMIG_PAUSE_AT``) and die."""
    args, kwargs = _child(cinder, volume, backend, record_path, conf_path,
                          env)
    out = open('%s.out' % record_path, 'w')
    return subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                            text=True, **kwargs)


def _child(cinder, volume, backend, record_path, conf_path, env,
           retype=False):
    """``(args, kwargs)`` of the child migrating (or retyping)
    ``volume``; the row is prepared as Cinder's API prepares it before
    its cast."""
    volume.update(dict({'status': 'retyping'} if retype else
                       {'migration_status': 'starting'},
                       previous_status=volume.status))
    volume.save()
    full = dict(os.environ)
    full.pop(faults.CRASH_AT, None)
    full.update(env)
    full[faults.RECORD] = str(record_path)
    return ([sys.executable, '-m', 'tests.compat.crash_volume',
             conf_path or cinder.conf_path, volume.id, backend]
            + ([crash_volume.RETYPE] if retype else []),
            {'cwd': ROOT, 'env': full})


def kill_at(cinder, volume, backend, point, record_path, timeout=300,
            conf_path=None, retype=False):
    """Migrate (or retype) ``volume`` to ``backend`` in a child killed at
    ``point``.

    :returns: the points the child reached, in order.
    :raises PointNotReached: it finished (or failed) without reaching it.
    """
    child, reached = run(cinder, volume, backend, record_path, point,
                         timeout, conf_path, retype)
    if child.returncode != -signal.SIGKILL:
        raise PointNotReached(
            'cinder-volume was not killed at %s: it exited %s (%s) having '
            'reached %s.\n%s' % (
                point, child.returncode,
                'finished' if child.returncode == crash_volume.SURVIVED
                else 'failed', ', '.join(reached) or 'no crash point',
                child.stdout[-2000:] + child.stderr[-4000:]))
    return reached


def reached_points(record_path):
    """The points a run recorded (``RBDMIG_CRASH_RECORD``)."""
    try:
        return pathlib.Path(record_path).read_text().split()
    except FileNotFoundError:
        return []


def restart(cinder, backends):
    """Run what cinder-volume runs at start for ``backends``.

    The manager's ``init_host``: the driver's ``do_setup`` (rbdmig's
    recovery) and check, then Cinder's own start-up cleanup
    (``CleanableManager.do_cleanup`` of this service's workers).
    """
    for backend in backends:
        mgr = cinder.manager(backend)
        mgr.driver._initialized = False
        try:
            mgr.init_host(service_id=mgr.service_id)
        finally:
            initialized = mgr.driver.initialized
            mgr.driver._initialized = True  # for the tests that follow
        assert initialized, '%s did not start again' % backend


def where(cinder, clusters, volume):
    """``(cluster, pool)`` of the backend the volume's row names."""
    driver = cinder.manager(cinder.backend_of(volume)).driver
    conf = driver.configuration
    (cluster,) = [c for c in clusters if c.conf_path == conf.rbd_ceph_conf]
    return cluster, conf.rbd_pool


def leftovers(clusters, name, keep):
    """Everything of ``name`` in every pool but ``keep`` (cluster, pool).

    Images named after it (its temporaries), trashed images, journal
    records and index keys, and in ``keep`` the migration's snapshots and
    tag on the volume itself.
    """
    found = []
    for cluster in clusters:
        with _client(cluster) as client:
            for pool in cluster.pools:
                here = (cluster, pool) == keep
                for image in images.names(cluster, pool):
                    if image.startswith(name) and not (here and
                                                       image == name):
                        found.append('image %s/%s' % (pool, image))
                for line in cluster.rbd('trash', 'ls', pool).splitlines():
                    if name in line:
                        found.append('trash %s: %s' % (pool, line))
                found += ['%s: %s' % (pool, x)
                          for x in _journaled(client, pool, name)]
    cluster, pool = keep
    with images.opened(cluster, pool, name) as image:
        found += ['snapshot %s@%s' % (name, s['name'])
                  for s in image.list_snaps()
                  if s['name'].startswith('rbdmig-')]
        with contextlib.suppress(KeyError):
            found.append('tag %s=%s on %s' % (
                journal.TAG, image.metadata_get(journal.TAG), name))
    return found


def _journaled(client, pool, name):
    ioctx = client.open_ioctx(pool)
    try:
        found = []
        with contextlib.suppress(rados.ObjectNotFound):
            ioctx.stat(journal.RECORD_PREFIX + name)
            found.append('journal record %s%s' % (journal.RECORD_PREFIX,
                                                  name))
        with rados.ReadOpCtx() as op:
            keys, _ = ioctx.get_omap_vals(op, '', name + '/', 1000)
            try:
                ioctx.operate_read_op(op, journal.INDEX)
            except rados.ObjectNotFound:
                return found
            found += ['journal index key %s' % key for key, _ in keys]
        return found
    finally:
        ioctx.close()


@contextlib.contextmanager
def _client(cluster):
    client = cluster.connect()
    try:
        yield client
    finally:
        client.shutdown()


def check(cinder, clusters, volume, checksum):
    """Assert the invariants; return the volume's row, re-read.

    * the volume reads identically (sha256) where its row says it is;
    * nothing of its name exists anywhere else: no temporary, tagged or
      trashed image, no journal record, no migration snapshot;
    * the row is settled: the status it had, no migration running.
    """
    from cinder import objects
    row = objects.Volume.get_by_id(cinder.ctxt, volume.id)
    cluster, pool = where(cinder, clusters, row)
    assert row.name in images.names(cluster, pool), (
        'the row says %s is in %s (%s), which has no such image'
        % (row.name, pool, row.host))
    assert images.digest(cluster, pool, row.name) == checksum, (
        '%s in %s does not read as before' % (row.name, pool))
    assert leftovers(clusters, row.name, (cluster, pool)) == []
    assert (row.status, row.migration_status in SETTLED) == (
        'available', True), 'row: status %s, migration_status %s' % (
            row.status, row.migration_status)
    return row
