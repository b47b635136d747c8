"""A generic copy taken over from a gone runner fences it first.

The runner killed mid-copy still holds the copy's exclusive lock, as Ceph
sees it, until its watch lapses (30 s): librbd's first write of the
resumed copy waited that long, and a runner thought gone that is not
could still have written.  Recovery breaks the lock (librbd's
``lock_break``, which blocklists the holder) before it writes; a lock of
its own client is never broken.
"""

import pytest

from rbdmig import objects
from tests.unit import rbd_fixtures as fx
from tests.unit import seams

DATA = seams.DATA * 3  # past the first checkpoint (1 MiB)
GONE = '192.0.2.7:0/4242'  # the killed runner's client


@pytest.fixture
def ceph():
    return fx.make_ceph()


@pytest.fixture
def svc(ceph, tmp_path):
    return seams.service(ceph, tmp_path)


def _image(ceph, pool, name):
    return ceph.image(fx.CONF_A, pool, name)


def _killed_holding_the_copy(svc, ceph, monkeypatch, at_point):
    """A generic move killed at its first checkpoint, its runner holding
    the copy's lock (librbd's first write takes it); the record's."""
    record = seams.volume(svc, ceph, DATA)
    revive = seams.silenced(svc, monkeypatch)

    def die():
        _image(ceph, 'ssd', record.name).lock_owners.append(GONE)
        raise seams.Killed('service.checkpoint')

    at_point['service.checkpoint'] = die
    with pytest.raises(seams.Killed):
        svc.migrate(record.id, 'ceph-b', method='generic')
    revive()
    seams.dead_processes(svc)
    return record


def test_a_resumed_copy_breaks_the_gone_runners_lock_before_writing(
        svc, ceph, monkeypatch, at_point):
    record = _killed_holding_the_copy(svc, ceph, monkeypatch, at_point)
    copy = _image(ceph, 'ssd', record.name)
    writes = []
    real_write = ceph.rbd.Image.write

    def write(image, data, offset):
        if image.data is copy:
            writes.append(list(copy.lock_owners))
        return real_write(image, data, offset)

    monkeypatch.setattr(ceph.rbd.Image, 'write', write)

    (outcome,) = svc.recover()

    assert outcome[1].endswith('and completed'), outcome
    assert ceph.blocklist == [GONE]
    assert writes and all(GONE not in held for held in writes), writes
    pool, name = seams.where(svc, ceph, record.id)
    assert (pool, seams.read(ceph, pool, name, 0, len(DATA))) == ('ssd', DATA)


def test_a_fence_that_fails_leaves_the_copy_to_resume(svc, ceph,
                                                      monkeypatch, at_point,
                                                      caplog):
    """Breaking the lock is refused (a client without the caps to
    blocklist): the copy resumes all the same, as before the fence, and
    the log says why it may wait."""
    record = _killed_holding_the_copy(svc, ceph, monkeypatch, at_point)
    ceph.fail('lock_break', ceph.rbd.Error('blocklist denied'))

    (outcome,) = svc.recover()

    assert outcome[1].endswith('and completed'), outcome
    assert ceph.blocklist == []
    assert [r for r in caplog.records
            if r.getMessage().startswith('Could not break the locks on %s'
                                         % record.name)]
    pool, name = seams.where(svc, ceph, record.id)
    assert (pool, seams.read(ceph, pool, name, 0, len(DATA))) == ('ssd', DATA)


def test_a_lock_of_its_own_client_is_never_broken(ceph):
    drv = fx.make_driver(ceph, pool='ssd', backend='ceph-b')
    volume = objects.Volume(name='volume-fenced', size=1)
    drv.create_volume(volume)
    with drv.sharing_connections():
        with drv._connect() as (client, _):
            ours = client.get_addrs()
        _image(ceph, 'ssd', volume.name).lock_owners[:] = [ours, GONE]

        assert drv.fence_writers(volume) == [GONE]

    assert _image(ceph, 'ssd', volume.name).lock_owners == [ours]
    assert ceph.blocklist == [GONE]


# -- a runner killed removing its retired source -------------------------


def _killed_removing(svc, ceph, monkeypatch, at_point):
    """A generic move killed as it removes its retired source, whose
    lock its runner holds (librbd's removal takes it)."""
    record = seams.volume(svc, ceph, DATA)
    revive = seams.silenced(svc, monkeypatch)

    def die():
        retired = [n for n in seams.images(ceph, 'hdd')
                   if n.endswith('.retired')]
        _image(ceph, 'hdd', retired[0]).lock_owners.append(GONE)
        raise seams.Killed('service.remove_source.before')

    at_point['service.remove_source.before'] = die
    with pytest.raises(seams.Killed):
        svc.migrate(record.id, 'ceph-b', method='generic')
    revive()
    seams.dead_processes(svc)
    return record


def test_a_whole_retired_source_s_lock_is_never_broken(
        svc, ceph, monkeypatch, at_point):
    # The fence is for a half-removed source only (it no longer opens by
    # name: only its dead remover held it; the functional tests kill
    # one inside librbd's removal).  A lock on a whole retired source is
    # a client's: it is not blocklisted.
    _killed_removing(svc, ceph, monkeypatch, at_point)

    svc.recover()

    assert ceph.blocklist == []
