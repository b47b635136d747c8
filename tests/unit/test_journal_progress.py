"""A move's progress in its journal record, against fake librados/librbd."""

import logging
import os
import socket

import pytest

from rbdmig import faults
from rbdmig.ceph import journal
from rbdmig.ceph import location
from tests.unit import rbd_fixtures as fx

DATA = os.urandom(64 * 1024)
METHODS = ['copy', 'clone_flatten', 'deep_copy', 'live', 'extents']


@pytest.fixture
def ceph():
    return fx.make_ceph()


def _journal(ceph, pool='hdd'):
    ioctx = ceph.rados.Rados(conffile=fx.CONF_A).open_ioctx(pool)
    return journal.Journal(ceph.rados, ioctx)


def _record(image='volume-1', method='extents'):
    dest = location.LocationInfo('ceph', fx.CONF_A, fx.FSID, 'admin',
                                 'ssd')._asdict()
    return journal.Record.new(image, method, 'hdd', dest)


def _object(ceph, image, pool='hdd'):
    return ceph.clusters[fx.CONF_A].objects[pool].get(
        journal.RECORD_PREFIX + image)


def _at(point, then):
    """A crash-point hook that calls ``then()`` when ``point`` is reached."""
    def hook(name):
        if name == point:
            then()
    return hook


@pytest.mark.parametrize('method', METHODS)
def test_a_running_move_has_its_progress_in_its_record(ceph, method,
                                                       monkeypatch):
    src = fx.make_driver(ceph, pool='hdd', rbd_migration_method=method,
                         migration_progress_report_interval=3600)
    dst = fx.make_driver(ceph, pool='ssd', backend='fast')
    volume = fx.make_volume(ceph, data=DATA)
    seen = {}

    def look():
        pool_journal = _journal(ceph)
        record = pool_journal.get(volume.name)
        seen.update(phase=record.phase,
                    progress=pool_journal.progress(record))

    monkeypatch.setattr(faults.POINTS, 'hook', _at('engine.copied', look))
    assert src.migrate_volume(None, volume, fx.host_of(dst)) == (True, None)

    found = seen['progress']
    assert seen['phase'] == journal.COPYING
    # The copy ended: its last update is written whatever the interval.
    assert found['bytes_done'] == found['bytes_total'] == 8 * fx.MiB
    assert found['method'] == method
    assert found['host'] == socket.gethostname()
    assert found['started'] <= found['updated']
    assert set(found) == {'bytes_done', 'bytes_total', 'rate', 'started',
                          'updated', 'host', 'method'}
    assert _object(ceph, volume.name) is None  # finished: all gone


def test_progress_is_written_once_an_interval_not_per_update(ceph):
    pool_journal = _journal(ceph)
    record = _record()
    pool_journal.claim(record)
    writes = []
    real = pool_journal.report
    pool_journal.report = lambda rec, values: writes.append(
        values['bytes_done']) or real(rec, values)
    now = [1000.0]
    publisher = journal.Publisher(pool_journal, record, interval=30,
                                  clock=lambda: now[0],
                                  monotonic=lambda: now[0])
    publisher.set_size(100)
    for done in range(1, 100):
        now[0] += 1  # 1 s between updates: 99 updates in 99 s
        publisher.absolute_update(done)
    now[0] += 1
    publisher.absolute_update(100)

    # The first, one per 30 s, and the last.
    assert writes == [0, 30, 60, 90, 100]
    found = pool_journal.progress(record)
    assert found['bytes_done'] == found['bytes_total'] == 100
    assert found['started'] == 1000.0 and found['updated'] == 1100.0
    assert found['rate'] == 1.0


def test_each_write_lands_before_its_pause_point(ceph, monkeypatch):
    # ``journal.progress`` is reached once a write, the write already in
    # the record: a process held there shows what it just wrote.
    pool_journal = _journal(ceph)
    record = _record()
    pool_journal.claim(record)
    paused = []
    monkeypatch.setattr(faults, 'pause_point', lambda name: paused.append(
        (name, pool_journal.progress(record)['bytes_done'])))
    now = [1000.0]
    publisher = journal.Publisher(pool_journal, record, interval=30,
                                  clock=lambda: now[0],
                                  monotonic=lambda: now[0])
    publisher.set_size(100)
    for done in (10, 40, 50, 100):
        now[0] += 20
        publisher.absolute_update(done)

    assert paused == [('journal.progress', 0), ('journal.progress', 40),
                      ('journal.progress', 100)]
    # A write that failed lands nowhere: no pause.
    def fail(rec, values):
        raise ceph.rados.TimedOut('the OSD did not answer')

    monkeypatch.setattr(pool_journal, 'report', fail)
    journal.Publisher(pool_journal, record, interval=0).set_size(100)
    assert len(paused) == 3


def test_a_failed_progress_write_is_logged_and_the_move_goes_on(
        ceph, monkeypatch, caplog):
    src = fx.make_driver(ceph, pool='hdd', rbd_migration_method='extents',
                         migration_progress_report_interval=0)
    dst = fx.make_driver(ceph, pool='ssd', backend='fast')
    volume = fx.make_volume(ceph, data=DATA)

    def fail(self, record, values):
        raise ceph.rados.TimedOut('the OSD did not answer')

    monkeypatch.setattr(journal.Journal, 'report', fail)
    with caplog.at_level(logging.WARNING):
        assert src.migrate_volume(None, volume, fx.host_of(dst)) == (
            True, None)

    assert fx.read_head(ceph, 'ssd', volume.name, len(DATA)) == DATA
    assert 'Could not record the progress' in caplog.text
    assert 'the copy goes on' in caplog.text


def test_progress_never_rewrites_the_phase_nor_a_phase_the_progress(ceph):
    pool_journal = _journal(ceph)
    record = _record()
    pool_journal.claim(record)
    stale = journal.Record.from_bytes(record.to_bytes())
    pool_journal.update(record, journal.COPYING)
    # A report made from a copy of the record taken before the phase
    # changed: the phase in Ceph stays.
    pool_journal.report(stale, {'bytes_done': 1, 'bytes_total': 2})
    assert pool_journal.get(record.image).phase == journal.COPYING
    pool_journal.update(record, journal.VERIFIED)
    assert pool_journal.progress(record) == {'bytes_done': 1,
                                             'bytes_total': 2}
    assert pool_journal.get(record.image).updated >= record.started


def test_a_late_report_creates_nothing_and_touches_no_other_record(ceph):
    pool_journal = _journal(ceph)
    first = _record()
    pool_journal.claim(first)
    pool_journal.finish(first)
    with pytest.raises(ceph.rados.ObjectNotFound):
        pool_journal.report(first, {'bytes_done': 1})
    assert _object(ceph, first.image) is None

    second = _record()
    pool_journal.claim(second)
    with pytest.raises(ceph.rados.Error):  # ECANCELED: not its record
        pool_journal.report(first, {'bytes_done': 1})
    assert pool_journal.progress(second) is None
    assert pool_journal.progress(first) is None


def test_a_reader_that_may_not_write_leaves_the_index_alone(ceph):
    pool_journal = _journal(ceph)
    record = _record()
    pool_journal.claim(record)
    ceph.clusters[fx.CONF_A].objects['hdd'].pop(
        journal.RECORD_PREFIX + record.image)
    ceph.fail('operate_write_op', ceph.rados.PermissionDeniedError('ro'))

    assert pool_journal.records(prune=False) == []
    index = ceph.clusters[fx.CONF_A].objects['hdd'][journal.INDEX]
    assert list(index['omap']) == ['%s/%s' % (record.image, record.id)]
