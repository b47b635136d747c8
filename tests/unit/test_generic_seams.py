"""Seams review, second pass: where a volume's data or its record could
be lost at the seams the first pass (test_seams_review.py) left.

Each test drives one sequence on the fake cluster (and a file backend
where the generic copy needs one), faults injected at named crash points
(:mod:`rbdmig.faults`, the ``at_point`` fixture), never by sleeping, and
asserts the invariant: one complete copy of the volume, its snapshots
included, where its record says it is.  The four defects the review
found come first, each followed by the tests of its fix: the generic
copy refuses a source it would not hold whole (larger than its record,
snapshots, clones), cleans up after Ctrl-C, and renames its source out
of clients' reach (retires it) before its last check and removal, every
crash point of which recovery finishes or undoes.
"""

import os

import pytest

from rbdmig import exception
from rbdmig import objects
from rbdmig.db import models
from rbdmig.migration import compare
from rbdmig.migration import manager
from rbdmig.migration import service as service_mod
from tests.unit import db_fixtures
from tests.unit import rbd_fixtures as fx
from tests.unit import seams
from tests.unit import test_file_driver as files

GiB = 1 << 30
DATA = seams.DATA


@pytest.fixture
def ceph():
    return fx.make_ceph()


@pytest.fixture
def svc(ceph, tmp_path):
    return seams.service(ceph, tmp_path)


# -- a record smaller than its image ------------------------------------------

def test_a_generic_copy_never_removes_a_source_larger_than_its_record(
        svc, ceph):
    # The record says 1 GiB; the image is 2 GiB (grown behind the
    # record: ``rbd resize``, another tool sharing the pool).  The
    # assisted path copies the image whole (its size is read from
    # librbd); the generic path copies, compares and sizes its
    # destination by the record only, then removes the source: the data
    # past 1 GiB is gone.  It should copy the image's own size (and size
    # its destination to hold it), or refuse.
    record = seams.volume(svc, ceph)
    past = b'written past the size the record says'
    with ceph.rbd.Image(seams.ioctx(ceph, 'hdd'), record.name) as image:
        image.resize(2 * GiB)
        image.write(past, GiB + 4096)

    try:
        svc.migrate(record.id, 'ceph-b', method='generic')
    except exception.RbdmigError:
        pass  # refusing is fine; dropping data is not

    pool, name = seams.where(svc, ceph, record.id)
    assert seams.read(ceph, pool, name, 0, len(DATA)) == DATA
    with ceph.rbd.Image(seams.ioctx(ceph, pool), name) as image:
        size = image.size()
    assert size >= 2 * GiB, 'the volume shrank to %d bytes' % size
    assert seams.read(ceph, pool, name, GiB + 4096, len(past)) == past


def test_a_larger_image_is_refused_before_anything_is_built(svc, ceph):
    # The fix: the record and the image disagree, and which is right is
    # not the copy's to decide (the record is the authority); it says
    # so, builds nothing, and moves the volume whole once the record
    # says what the image holds.
    record = seams.volume(svc, ceph)
    past = b'written past the size the record says'
    with ceph.rbd.Image(seams.ioctx(ceph, 'hdd'), record.name) as image:
        image.resize(2 * GiB)
        image.write(past, GiB + 4096)

    with pytest.raises(exception.MigrationRefused,
                       match='the record and the image disagree') as err:
        svc.migrate(record.id, 'ceph-b', method='generic')
    assert "Set the record's size to 2 GiB" in str(err.value)

    shown = svc.show(record.id)
    assert (shown['backend'], shown['status'], shown['migration_status']) \
        == ('ceph-a', 'available', 'error')
    assert 'the record and the image disagree' in shown['progress']['error']
    assert seams.images(ceph, 'ssd') == []
    assert [v.id for v in svc.db.list_volumes(include_hidden=True)] == [
        record.id]

    db_fixtures.set_row(svc.db, models.Volume, record.id, size_gib=2)
    svc.migrate(record.id, 'ceph-b', method='generic')
    pool, name = seams.where(svc, ceph, record.id)
    assert pool == 'ssd'
    assert seams.read(ceph, pool, name, GiB + 4096, len(past)) == past
    assert seams.read(ceph, pool, name, 0, len(DATA)) == DATA


def test_the_copy_and_its_check_cover_the_image_not_the_record(ceph):
    # copy_volume_data and check_copy read the source's size from its
    # handle: a record smaller than its image no longer cuts its tail.
    src = fx.make_driver(ceph, pool='hdd')
    dst = fx.make_driver(ceph, pool='ssd', backend='fast')
    volume = fx.make_volume(ceph, size_mib=2048, data=b'head')  # 1 GiB
    past = b'past the record'
    with ceph.rbd.Image(seams.ioctx(ceph, 'hdd'), volume.name) as image:
        image.write(past, GiB + 4096)
    copy = objects.Volume(name=volume.name, size=2)
    dst.create_volume(copy)

    done = src.copy_volume_data(None, volume, copy, dest_driver=dst)

    assert done.size == 2 * GiB
    assert seams.read(ceph, 'ssd', copy.name, GiB + 4096, len(past)) == past
    compare.check_copy(src, volume, dst, copy)
    with ceph.rbd.Image(seams.ioctx(ceph, 'ssd'), copy.name) as image:
        image.write(b'?', GiB + 4096)
    with pytest.raises(exception.CopyError, match='at byte %d' % (GiB + 4096)):
        compare.check_copy(src, volume, dst, copy)

    small = objects.Volume(size=1)
    dst.create_volume(small)
    with pytest.raises(exception.InvalidVolume, match='fewer than the'):
        src.copy_volume_data(None, volume, small, dest_driver=dst)
    with pytest.raises(exception.CopyError, match='fewer than the'):
        compare.check_copy(src, volume, dst, small)


def test_the_library_refuses_a_larger_image_too(ceph, tmp_path):
    src = fx.make_driver(ceph, pool='hdd')
    dst = files.make_driver(tmp_path)
    dst.do_setup(None)
    volume = fx.make_volume(ceph, size_mib=1536, data=b'head')  # 1 GiB

    with pytest.raises(exception.MigrationRefused,
                       match='the record and the image disagree'):
        manager.migrate(None, volume, src, dst)

    assert seams.images(ceph, 'hdd') == [volume.name]
    assert os.listdir(dst.volume_dir) == []


# -- Ctrl-C (or any BaseException) once the source was removed ----------------

def test_an_interrupted_generic_copy_leaves_nothing_in_the_way(svc, ceph,
                                                               at_point):
    # Ctrl-C during the copy: Move.copy's ``except Exception`` misses it,
    # so _abandon never runs; _run records ``error``.  The partial copy
    # (under the volume's own name on ceph-b) and its hidden record stay:
    # recovery ignores an ended migration, and the next ``rbdmig
    # migrate`` to ceph-b fails on the name (the database's, then the
    # assisted path's check_name_free) for good.
    record = seams.volume(svc, ceph)

    def interrupt():
        raise KeyboardInterrupt()

    at_point['service.checkpoint'] = interrupt
    with pytest.raises(KeyboardInterrupt):
        svc.migrate(record.id, 'ceph-b', method='generic')
    seams.dead_processes(svc)
    svc.recover()

    if svc.db.get_volume(record.id).backend == 'ceph-a':
        # Ended (or undone by recovery): nothing of it is left, and a
        # retry moves the volume.
        assert seams.images(ceph, 'ssd') == [], 'the partial copy was left'
        svc.migrate(record.id, 'ceph-b', method='generic')
    pool, name = seams.where(svc, ceph, record.id)
    assert (pool, seams.read(ceph, pool, name, 0, len(DATA))) == ('ssd', DATA)


@pytest.mark.parametrize('stop, point', [
    (KeyboardInterrupt, 'service.generic'),       # before its creation
    (KeyboardInterrupt, 'service.dest_created'),  # created, empty
    (SystemExit, 'service.checkpoint'),           # a SIGTERM handler's
    (KeyboardInterrupt, 'service.copied'),        # copied, unchecked
    (KeyboardInterrupt, 'service.retired'),       # the source retired
    (KeyboardInterrupt, 'service.verified'),      # checked, retired
])
def test_an_interrupt_before_completing_undoes_the_move(svc, ceph, at_point,
                                                        stop, point):
    # Wherever Ctrl-C (or sys.exit) lands before ``completing``, the
    # source is the volume under its name, the copy and its record go,
    # and the next move is not refused.
    record = seams.volume(svc, ceph)

    def interrupt():
        raise stop()

    at_point[point] = interrupt
    with pytest.raises(stop):
        svc.migrate(record.id, 'ceph-b', method='generic')

    shown = svc.show(record.id)
    assert (shown['backend'], shown['migration_status']) == ('ceph-a',
                                                             'error')
    assert seams.images(ceph, 'hdd') == [record.name]
    assert seams.images(ceph, 'ssd') == []
    assert [v.id for v in svc.db.list_volumes(include_hidden=True)] == [
        record.id]
    assert svc.recover() == []
    svc.migrate(record.id, 'ceph-b', method='generic')
    pool, name = seams.where(svc, ceph, record.id)
    assert (pool, seams.read(ceph, pool, name, 0, len(DATA))) == ('ssd', DATA)


def test_an_image_of_the_copys_name_is_never_removed_by_the_undo(svc, ceph,
                                                                  at_point):
    # Interrupted as it creates its copy, the move cannot tell whether
    # the image of that name on the destination is its own: it forgets
    # its record of it and leaves the image (not a volume of rbdmig's).
    record = seams.volume(svc, ceph)
    ceph.rbd.RBD().create(seams.ioctx(ceph, 'ssd'), record.name, GiB)
    with ceph.rbd.Image(seams.ioctx(ceph, 'ssd'), record.name) as image:
        image.write(b'not rbdmig\'s', 0)

    with pytest.raises(exception.VolumeExists):
        svc.migrate(record.id, 'ceph-b', method='generic')

    assert seams.read(ceph, 'ssd', record.name, 0, 12) == b'not rbdmig\'s'
    assert [v.id for v in svc.db.list_volumes(include_hidden=True)] == [
        record.id]
    assert seams.where(svc, ceph, record.id) == ('hdd', record.name)


# -- a client write after the generic copy was verified -----------------------

def test_a_write_after_the_generic_copy_was_checked_is_never_lost(
        svc, ceph, at_point):
    # Move.copy compares the copy, then looks for clients; complete()
    # journals ``completing`` and removes the source.  A client that
    # opened, wrote and closed the source in between leaves no watcher
    # for librbd to refuse the removal with, and its acknowledged write
    # exists nowhere after.  The assisted engine closes this window by
    # retiring the source (renamed out of every client's reach, then
    # compared); the generic path could do the same before its last
    # check.
    record = seams.volume(svc, ceph)
    acknowledged = []

    def client_writes():
        try:
            with ceph.rbd.Image(seams.ioctx(ceph, 'hdd'),
                                record.name) as image:
                image.write(b'acknowledged', 0)
        except ceph.rbd.Error:
            return  # kept off the source: nothing was written
        acknowledged.append(True)

    at_point['service.completing'] = client_writes
    try:
        svc.migrate(record.id, 'ceph-b', method='generic')
    except exception.RbdmigError:
        pass  # refusing is fine; losing the write is not

    pool, name = seams.where(svc, ceph, record.id)
    if acknowledged:
        assert seams.read(ceph, pool, name, 0, 12) == b'acknowledged', pool


def _client_writes(ceph, name, data=b'acknowledged'):
    """A client opens ``name``, writes, closes: it leaves no watcher."""
    def write():
        with ceph.rbd.Image(seams.ioctx(ceph, 'hdd'), name) as image:
            image.write(data, 0)
    return write


def test_a_write_before_the_source_retires_is_caught_by_the_last_check(
        svc, ceph, at_point):
    # The copy is done and no client has the source open; one opens it,
    # writes and closes it before it retires.  The last comparison, made
    # once no client can reach it, catches the write: the source gets
    # its name back, with the write, and the copy goes.
    record = seams.volume(svc, ceph)
    at_point['service.copied'] = _client_writes(ceph, record.name)

    with pytest.raises(exception.CopyError, match='differs from the source'):
        svc.migrate(record.id, 'ceph-b', method='generic')

    assert seams.where(svc, ceph, record.id) == ('hdd', record.name)
    assert seams.read(ceph, 'hdd', record.name, 0, 12) == b'acknowledged'
    assert seams.images(ceph, 'ssd') == []
    assert svc.show(record.id)['migration_status'] == 'error'


def test_a_client_holding_the_source_as_it_retires_keeps_it(svc, ceph,
                                                             at_point):
    # A client that opened the source just before its rename keeps it
    # open under its retired name (librbd addresses it by id): it may
    # write still, so the move is undone.
    record = seams.volume(svc, ceph)
    source = ceph.image(fx.CONF_A, 'hdd', record.name)
    at_point['service.retired'] = lambda: source.watchers.append(
        {'id': 9, 'addr': '10.0.0.9:0/9'})

    with pytest.raises(exception.MigrationError, match='had it open'):
        svc.migrate(record.id, 'ceph-b', method='generic')

    assert seams.where(svc, ceph, record.id) == ('hdd', record.name)
    assert seams.read(ceph, 'hdd', record.name, 0, len(DATA)) == DATA
    assert seams.images(ceph, 'ssd') == []


def test_a_snapshot_made_during_the_copy_keeps_the_source(svc, ceph,
                                                         at_point):
    record = seams.volume(svc, ceph)

    def snapshot():
        with ceph.rbd.Image(seams.ioctx(ceph, 'hdd'), record.name) as image:
            image.create_snap('during')

    at_point['service.copied'] = snapshot
    with pytest.raises(exception.MigrationError, match='snapshot'):
        svc.migrate(record.id, 'ceph-b', method='generic')

    assert seams.where(svc, ceph, record.id) == ('hdd', record.name)
    assert list(ceph.image(fx.CONF_A, 'hdd', record.name).snaps) == [
        'during']
    assert seams.images(ceph, 'ssd') == []


@pytest.mark.parametrize('point', ['service.copied', 'service.retired',
                                   'service.verified'])
def test_killed_around_the_retirement_recovery_gives_back_and_finishes(
        svc, ceph, monkeypatch, at_point, point):
    # seams.Killed with its source retired (or about to be), the record says
    # ``migrating``: recovery gives the source its name back, then
    # resumes, checks again and completes.  No retired source is left.
    record = seams.volume(svc, ceph)
    revive = seams.silenced(svc, monkeypatch)

    def die():
        raise seams.Killed(point)

    at_point[point] = die
    with pytest.raises(seams.Killed):
        svc.migrate(record.id, 'ceph-b', method='generic')
    assert svc.show(record.id)['migration_status'] == 'migrating'
    revive()
    seams.dead_processes(svc)

    (outcome,) = svc.recover()

    assert outcome[1].endswith('and completed'), outcome
    pool, name = seams.where(svc, ceph, record.id)
    assert (pool, seams.read(ceph, pool, name, 0, len(DATA))) == ('ssd', DATA)
    assert seams.images(ceph, 'hdd') == []
    assert [v.id for v in svc.db.list_volumes(include_hidden=True)] == [
        record.id]


@pytest.mark.parametrize('point', ['service.given_back', 'service.undoing'])
def test_killed_giving_the_source_back_recovery_never_loses_it(
        svc, ceph, monkeypatch, at_point, point):
    # The last check failed (a client wrote before the retirement); the
    # move dies as it gives the source back, or once it did.  Recovery
    # resumes and checks again: the write is never lost.
    record = seams.volume(svc, ceph)
    revive = seams.silenced(svc, monkeypatch)
    at_point['service.copied'] = _client_writes(ceph, record.name)

    def die():
        raise seams.Killed(point)

    at_point[point] = die
    with pytest.raises(seams.Killed):
        svc.migrate(record.id, 'ceph-b', method='generic')
    revive()
    seams.dead_processes(svc)

    svc.recover()

    pool, name = seams.where(svc, ceph, record.id)
    assert seams.read(ceph, pool, name, 0, 12) == b'acknowledged'
    assert seams.read(ceph, pool, name, 12, 100) == DATA[12:112]
    assert svc.show(record.id)['migration_status'] in ('error', 'success')
    assert [n for n in seams.images(ceph, 'hdd') + seams.images(ceph, 'ssd')
            if '.rbdmig-' in n] == []


def test_a_source_that_cannot_get_its_name_back_is_left_to_recovery(
        svc, ceph, at_point):
    # The last check fails, and meanwhile another image took the
    # volume's name: the retired source is never renamed over it, nor
    # is anything removed.  The record stays running, and recovery
    # leaves it as it is until the name is free (an operator's call).
    record = seams.volume(svc, ceph)
    source = ceph.image(fx.CONF_A, 'hdd', record.name)

    def name_taken_and_client():
        source.watchers.append({'id': 9, 'addr': '10.0.0.9:0/9'})
        ceph.rbd.RBD().create(seams.ioctx(ceph, 'hdd'), record.name, GiB)

    at_point['service.retired'] = name_taken_and_client
    with pytest.raises(exception.MigrationError,
                       match='could not get its name back') as err:
        svc.migrate(record.id, 'ceph-b', method='generic')
    (retired,) = [n for n in seams.images(ceph, 'hdd') if n != record.name]
    assert retired in str(err.value)
    assert svc.show(record.id)['migration_status'] == 'migrating'
    source.watchers.clear()
    seams.dead_processes(svc)

    (outcome,) = svc.recover()

    assert outcome[1].startswith('left as it is'), outcome
    assert sorted(seams.images(ceph, 'hdd')) == sorted([record.name, retired])
    assert seams.read(ceph, 'hdd', retired, 0, len(DATA)) == DATA
    assert seams.images(ceph, 'ssd') == [record.name]  # the copy, kept


def test_a_source_given_back_while_completing_is_kept_with_its_copy(
        svc, ceph, monkeypatch, at_point):
    # A client opened the retired source as it was being removed: the
    # move gives it back and dies before ending its record, which says
    # ``completing``.  Recovery must not remove the source under its
    # name (the client may be writing): it ends the move and keeps both,
    # saying how to remove the copy.
    record = seams.volume(svc, ceph)
    source = ceph.image(fx.CONF_A, 'hdd', record.name)
    revive = seams.silenced(svc, monkeypatch)
    at_point['service.remove_source.before'] = lambda: source.watchers.append(
        {'id': 9, 'addr': '10.0.0.9:0/9'})

    def die():
        raise seams.Killed('given back')

    at_point['service.given_back'] = die
    with pytest.raises(seams.Killed):
        svc.migrate(record.id, 'ceph-b', method='generic')
    assert svc.show(record.id)['migration_status'] == 'completing'
    revive()
    source.watchers.clear()
    seams.dead_processes(svc)

    (outcome,) = svc.recover()

    assert outcome[1].startswith('ended: its source is under its name')
    shown = svc.show(record.id)
    assert (shown['backend'], shown['migration_status']) == ('ceph-a',
                                                             'error')
    assert seams.read(ceph, 'hdd', record.name, 0, len(DATA)) == DATA
    assert seams.images(ceph, 'ssd') == [record.name]
    copy_id = svc.db.latest_migration(record.id).dest_volume_id
    assert ('rbdmig delete %s' % copy_id) in shown['progress']['error']
    svc.delete(copy_id)  # as the message says
    svc.migrate(record.id, 'ceph-b', method='generic')
    assert seams.where(svc, ceph, record.id)[0] == 'ssd'


def test_a_completing_move_whose_copy_is_gone_gives_its_source_back(
        svc, ceph, monkeypatch, at_point):
    # seams.Killed once ``completing``, its source retired; the copy removed
    # by hand since.  The retired source is all that is left: recovery
    # gives it its name back, where the record names it, and leaves the
    # record for the operator.
    record = seams.volume(svc, ceph)
    revive = seams.silenced(svc, monkeypatch)

    def die():
        raise seams.Killed('completing')

    at_point['service.completing'] = die
    with pytest.raises(seams.Killed):
        svc.migrate(record.id, 'ceph-b', method='generic')
    revive()
    seams.dead_processes(svc)
    ceph.rbd.RBD().remove(seams.ioctx(ceph, 'ssd'), record.name)

    (outcome,) = svc.recover()

    assert 'under its name again' in outcome[1], outcome
    assert seams.images(ceph, 'hdd') == [record.name]
    assert seams.read(ceph, 'hdd', record.name, 0, len(DATA)) == DATA


def test_the_library_catches_a_write_made_before_the_retirement(ceph,
                                                                tmp_path):
    # manager.migrate retires its source too: a client that wrote just
    # before (after the last look for clients) is caught by the last
    # comparison, the source given its name back with the write, the
    # copy removed.
    src = fx.make_driver(ceph, pool='hdd')
    dst = files.make_driver(tmp_path)
    dst.do_setup(None)
    volume = fx.make_volume(ceph, size_mib=1024, data=DATA)
    rename = src.rename_volume

    def write_then_rename(vol, new_name):
        if new_name != volume.name:  # not as it is given back
            _client_writes(ceph, volume.name)()
        return rename(vol, new_name)

    src.rename_volume = write_then_rename
    with pytest.raises(exception.CopyError, match='differs'):
        manager.migrate(None, volume, src, dst)

    assert seams.images(ceph, 'hdd') == [volume.name]
    assert seams.read(ceph, 'hdd', volume.name, 0, 12) == b'acknowledged'
    assert os.listdir(dst.volume_dir) == []

    src.rename_volume = rename
    moved = manager.migrate(None, volume, src, dst)
    assert moved.path == 'generic'
    assert seams.images(ceph, 'hdd') == []
    with open(dst.local_path(volume), 'rb') as f:
        assert f.read(12) == b'acknowledged'


def test_a_file_is_renamed_never_over_another(tmp_path):
    drv = files.make_driver(tmp_path)
    drv.do_setup(None)
    vol, other = files.volume(), files.volume()
    drv.create_volume(vol)
    drv.create_volume(other)
    files.write_at(drv, vol, {0: b'mine'})

    with pytest.raises(exception.VolumeExists):
        drv.rename_volume(vol, other.name)
    retired = vol.name + '.rbdmig-generic-1.retired'
    drv.rename_volume(vol, retired)
    assert sorted(os.listdir(drv.volume_dir)) == sorted([other.name,
                                                         retired])
    # A retired source is not a volume for ``rbdmig import``.
    assert [name for name, _ in drv.list_images()] == [other.name]
    with pytest.raises(exception.VolumeNotFound):
        drv.rename_volume(vol, 'anything')

    # Cut short between its link and its unlink, a rename leaves both
    # names on one file; the next call finishes it.
    os.link(os.path.join(drv.volume_dir, retired), drv.local_path(vol))
    drv.rename_volume(objects.Volume(id=vol.id, name=retired), vol.name)
    assert sorted(os.listdir(drv.volume_dir)) == sorted([other.name,
                                                         vol.name])
    with open(drv.local_path(vol), 'rb') as f:
        assert f.read(4) == b'mine'


# -- a drain run again after its process died ---------------------------------

def test_a_generic_copy_never_drops_the_sources_snapshots(ceph, tmp_path):
    # The assisted path refuses a volume whose snapshots its method would
    # drop (MigrationRefused: no generic copy follows).  Into a file
    # backend the RBD driver answers (False, None) before looking (the
    # destination is not Ceph), and the service copies the head through
    # this host; the source's removal then fails (librbd: it has
    # snapshots), the move is Unfinished, "completing", and every
    # recovery retries the removal and fails ("left completing").  The
    # message says "has snapshots; delete them first" and "rbdmig
    # recover finishes the move": done, the snapshot exists nowhere.
    # The generic copy should refuse a source with snapshots up front,
    # as the assisted path does.
    dst = files.make_driver(tmp_path)
    dst.do_setup(None)
    drivers = {'ceph-a': fx.make_driver(ceph, pool='hdd', backend='ceph-a'),
               'files': dst}
    svc = service_mod.Service(db_fixtures.make_db(tmp_path), drivers)
    record = seams.volume(svc, ceph, data=b'before the upgrade')
    with ceph.rbd.Image(seams.ioctx(ceph, 'hdd'), record.name) as image:
        image.create_snap('before-upgrade')
        image.write(DATA, 0)

    try:
        svc.migrate(record.id, 'files')
    except exception.RbdmigError:
        pass  # refusing is fine
    seams.dead_processes(svc)
    outcomes = svc.recover()

    found = svc.show(record.id)
    assert found['migration_status'] == 'error', (found, outcomes)
    assert found['backend'] == 'ceph-a'
    source = ceph.image(fx.CONF_A, 'hdd', record.name)
    assert list(source.snaps) == ['before-upgrade']
    assert os.listdir(dst.volume_dir) == [], 'a copy without its snapshots'


def test_a_generic_copy_refuses_snapshots_even_where_assisted_keeps_them(
        svc, ceph):
    # --method generic between two pools: deep_copy would carry the
    # snapshot, the generic copy would not; it refuses, building nothing.
    record = seams.volume(svc, ceph)
    with ceph.rbd.Image(seams.ioctx(ceph, 'hdd'), record.name) as image:
        image.create_snap('kept')

    with pytest.raises(exception.MigrationRefused,
                       match=r'1 snapshot\(s\) \(kept\)'):
        svc.migrate(record.id, 'ceph-b', method='generic')

    assert seams.images(ceph, 'ssd') == []
    assert [v.id for v in svc.db.list_volumes(include_hidden=True)] == [
        record.id]
    assert list(ceph.image(fx.CONF_A, 'hdd', record.name).snaps) == ['kept']


def test_the_library_refuses_a_source_with_clones(ceph, tmp_path):
    src = fx.make_driver(ceph, pool='hdd')
    dst = files.make_driver(tmp_path)
    dst.do_setup(None)
    volume = fx.make_volume(ceph, size_mib=1024, data=DATA)
    ioctx = seams.ioctx(ceph, 'hdd')
    with ceph.rbd.Image(ioctx, volume.name) as image:
        image.create_snap('base')
        image.protect_snap('base')
    ceph.rbd.RBD().clone(ioctx, volume.name, 'base', ioctx, 'child')

    with pytest.raises(exception.MigrationRefused,
                       match=r'1 clone\(s\) depending on them'):
        manager.migrate(None, volume, src, dst)

    assert sorted(seams.images(ceph, 'hdd')) == sorted([volume.name, 'child'])
    assert os.listdir(dst.volume_dir) == []
