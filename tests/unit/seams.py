"""What the seams tests share: a service over two fake RBD backends, a
kill, and where a volume is."""

import socket

from rbdmig.db import models
from rbdmig.migration import service as service_mod
from tests.unit import db_fixtures
from tests.unit import rbd_fixtures as fx

DATA = bytes(range(256)) * (1 << 12)  # 1 MiB
POOLS = {'ceph-a': 'hdd', 'ceph-b': 'ssd'}


class Killed(BaseException):
    """A SIGKILL, in process: nothing of the code's own cleanup runs."""


def service(ceph, tmp_path):
    """Two RBD backends of ``ceph`` and a database of their own."""
    drivers = {'ceph-a': fx.make_driver(ceph, pool='hdd', backend='ceph-a'),
               'ceph-b': fx.make_driver(ceph, pool='ssd', backend='ceph-b')}
    for name, drv in drivers.items():
        # Checkpoints every 64 KiB, so a copy has several.
        drv.configuration._conf.set_override('volume_copy_chunk_size',
                                             64 << 10, group=name)
    return service_mod.Service(db_fixtures.make_db(tmp_path), drivers)


def images(ceph, pool):
    return sorted(ceph.clusters[fx.CONF_A].pools[pool])


def ioctx(ceph, pool):
    return ceph.rados.Rados(conffile=fx.CONF_A).open_ioctx(pool)


def volume(svc, ceph, data=DATA):
    record = svc.create('ceph-a', 1)
    with ceph.rbd.Image(ioctx(ceph, 'hdd'), record.name) as image:
        image.write(data, 0)
    return record


def read(ceph, pool, name, offset, length):
    with ceph.rbd.Image(ioctx(ceph, pool), name) as image:
        return image.read(offset, length)


def silenced(svc, monkeypatch):
    """A killed process records nothing more: its finish_migration does
    nothing until the returned ``revive()``."""
    real = svc.db.finish_migration
    state = {'silent': True}
    monkeypatch.setattr(
        svc.db, 'finish_migration',
        lambda *a, **k: None if state['silent'] else real(*a, **k))

    def revive():
        state['silent'] = False
    return revive


def dead_processes(svc):
    """Every running migration's process is gone (a pid that cannot run
    here): what a later command of this host finds after a crash."""
    for migration in svc.db.list_migrations(running=True):
        db_fixtures.set_row(svc.db, models.Migration, migration.id,
                            host='%s:999999999' % socket.gethostname())


def where(svc, ceph, volume_id):
    """``(pool, name)`` the record names, asserting the image is there."""
    record = svc.db.get_volume(volume_id)
    pool = POOLS[record.backend]
    assert record.name in images(ceph, pool), (
        'the record names %s on %s, where no such image is (hdd: %s, '
        'ssd: %s)' % (record.name, record.backend, images(ceph, 'hdd'),
                      images(ceph, 'ssd')))
    return pool, record.name
