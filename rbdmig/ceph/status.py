"""The migrations journaled in RBD backends' pools, as any host sees them."""

import dataclasses

from oslo_config import cfg

from rbdmig import exception
from rbdmig.ceph import connection
from rbdmig.ceph import journal
from rbdmig.ceph import liveness

# The volume_driver of a backend section whose pool may journal
# migrations: Cinder's RBD driver, rbdmig's under Cinder, rbdmig's own.
RBD_DRIVERS = frozenset([
    'cinder.volume.drivers.rbd.RBDDriver',
    'rbdmig.cinder.RBDDriver',
    'rbdmig.cinder.driver.RBDDriver',
    'rbdmig.volume.drivers.rbd.RBDDriver',
])
# Cinder's section whose values every backend section inherits.
BACKEND_DEFAULTS = 'backend_defaults'


@dataclasses.dataclass(frozen=True)
class Source:
    """A backend section's pool, and how to reach its cluster.

    Only what connecting needs is read: the keyring as a path, never a
    secret (``rbd_secret_uuid`` is not read).
    """

    backend: str
    address: connection.Address
    pool: str

    def describe(self):
        """What ``--format json`` says of it: names and paths."""
        return {'backend': self.backend, 'pool': self.pool,
                'cluster': self.address.cluster_name,
                'conf': self.address.conf or None,
                'user': self.address.user, 'keyring': self.address.keyring}


def _parse(paths):
    """``{section: {key: value}}`` of the files, later files winning."""
    merged = {}
    for path in paths:
        sections = {}
        try:
            cfg.ConfigParser(path, sections).parse()
        except OSError as err:
            raise exception.InvalidInput(
                reason='cannot read %s: %s' % (path, err.strerror))
        except cfg.ParseError as err:
            raise exception.InvalidInput(reason=str(err))
        for name, values in sections.items():
            merged.setdefault(name, {}).update(
                {key: value[-1] for key, value in values.items()})
    return merged


def sources(paths):
    """The RBD backends the config files describe.

    Any file with backend sections: rbdmig's own config or a
    cinder.conf, read as plain files (neither Cinder's options nor a
    driver are loaded) and as one config, later files winning, as
    oslo.config reads several.  A section is a backend when its
    ``volume_driver`` is one of :data:`RBD_DRIVERS`; its ``rbd_pool``,
    ``rbd_ceph_conf``, ``rbd_cluster_name``, ``rbd_user`` and
    ``rbd_keyring_conf`` (else ``[backend_defaults]``'s, else the
    drivers' defaults) say where it is.  Two sections naming one pool
    of one cluster are one source, the first.

    :raises InvalidInput: a file cannot be read or parsed.
    """
    sections = _parse(paths)
    defaults = sections.get(BACKEND_DEFAULTS, {})
    found, seen = [], set()
    for name, values in sections.items():
        if name in ('DEFAULT', BACKEND_DEFAULTS):
            continue
        values = dict(defaults, **values)
        if values.get('volume_driver', '').strip() not in RBD_DRIVERS:
            continue
        address = connection.Address(
            cluster_name=values.get('rbd_cluster_name') or 'ceph',
            conf=values.get('rbd_ceph_conf') or '',
            user=values.get('rbd_user') or None,
            keyring=values.get('rbd_keyring_conf') or None)
        source = Source(name, address, values.get('rbd_pool') or 'rbd')
        if (address, source.pool) not in seen:
            seen.add((address, source.pool))
            found.append(source)
    return found


@dataclasses.dataclass
class Migration:
    """One journaled migration: its record, progress, and liveness.

    :ivar watched: whether its migrating client still watches the
        record (:mod:`liveness`); None when that cannot be told.
    :ivar local_fsid: the source cluster's fsid (a destination in
        another cluster is named with its own).
    """

    backend: str
    record: journal.Record
    progress: dict
    watched: bool
    local_fsid: str = None

    @property
    def stranded(self):
        """True once no process runs it: recovery's to finish or undo."""
        return None if self.watched is None else not self.watched

    def destination(self):
        """The destination pool, ``pool@fsid`` in another cluster."""
        dest = self.record.dest or {}
        where = dest.get('pool') or '?'
        if dest.get('fsid') and dest.get('fsid') != self.local_fsid:
            where += '@%s' % dest['fsid']
        return where

    def as_dict(self, now):
        """What ``rbdmig status`` shows: percent, rate, time left (s),
        age of the last update (s), stranded."""
        record, found = self.record, self.progress or {}
        done, total = found.get('bytes_done'), found.get('bytes_total')
        rate = found.get('rate')
        percent = eta = None
        if done is not None and total:
            percent = min(100.0, 100.0 * done / total)
            # A stranded move has no time left: nothing runs it.
            if self.stranded:
                eta = None
            elif done >= total:
                eta = 0.0
            elif rate:
                eta = (total - done) / rate
        last = max(t for t in (found.get('updated'), record.updated,
                               record.started) if t is not None)
        return {
            'backend': self.backend, 'migration': record.id,
            'volume': record.volume_id, 'image': record.image,
            'source': record.source_pool,
            'destination': self.destination(),
            'destination_host': record.dest_host, 'phase': record.phase,
            'method': found.get('method') or record.method,
            'percent': percent, 'bytes_done': done, 'bytes_total': total,
            'rate': rate, 'eta': eta,
            'host': found.get('host') or record.host,
            'service': record.service,
            'started': record.started, 'updated': last,
            'age': max(0.0, now - last), 'stranded': self.stranded}


def _watched(ioctx, source, record, oid):
    try:
        found = liveness.watchers(ioctx, source.address, source.pool, oid)
    except exception.VolumeBackendAPIException:
        return None
    owner = record.clients.get('source')
    if owner is None:
        return bool(found)
    return any(w.client == owner for w in found)


def read(rados, source, limits):
    """The migrations journaled in ``source``'s pool; writes nothing.

    :param rados: the ``rados`` module.
    :param limits: the :class:`connection.Limits` to connect with.
    :raises RbdmigError: the cluster or the pool cannot be reached.
    """
    with connection.connect(rados, source.address, limits,
                            pool=source.pool) as (client, ioctx):
        fsid = client.get_fsid()
        if isinstance(fsid, bytes):
            fsid = fsid.decode()
        pool_journal = journal.Journal(rados, ioctx)
        found = []
        for record in pool_journal.records(prune=False):
            found.append(Migration(
                source.backend, record, pool_journal.progress(record),
                _watched(ioctx, source, record, pool_journal.oid(record)),
                local_fsid=fsid))
        return found
