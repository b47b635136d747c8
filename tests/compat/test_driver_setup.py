"""do_setup: recovery that fails never keeps the backend from starting."""

import logging
import threading
from unittest import mock

import pytest
import rados
from cinder.volume import configuration
from cinder.volume.drivers import rbd as cinder_rbd

from rbdmig.ceph import journal
from rbdmig.ceph import recover
from rbdmig.cinder import authority
from rbdmig.cinder import driver as rbdmig_driver

RECORD = journal.Record.new('volume-1', 'extents', 'volumes-a',
                            {'pool': 'volumes-b'})


@pytest.fixture
def drv(monkeypatch):
    """rbdmig's driver, Cinder's own set-up and the cluster mocked away."""
    monkeypatch.setattr(cinder_rbd.RBDDriver, 'do_setup',
                        lambda self, context: None)
    drv = rbdmig_driver.RBDDriver(
        configuration=configuration.Configuration(
            cinder_rbd.RBD_OPTS, config_group='unit-setup'),
        host='unit@unit-setup')
    monkeypatch.setattr(drv, 'migration_backend', mock.Mock)
    # Cinder's database is not there: no row to settle.
    monkeypatch.setattr(drv, '_settle_interrupted_migrations',
                        lambda context: None)
    return drv


@pytest.mark.parametrize('error', [
    PermissionError(13, 'Permission denied', '/run/lock/rbdmig'),
    rados.Error('reading the journal failed'),
    rados.PermissionDeniedError('no caps on rbdmig_migrations'),
    ValueError('a record written by another version'),
])
def test_recovery_that_raises_is_logged_and_setup_goes_on(
        drv, monkeypatch, caplog, error):
    monkeypatch.setattr(recover, 'recover', mock.Mock(side_effect=error))
    caplog.set_level(logging.WARNING)

    drv.do_setup(None)  # raises nothing

    (logged,) = [r for r in caplog.records if r.name == rbdmig_driver.__name__]
    assert logged.levelno == logging.ERROR
    assert 'recover' in logged.getMessage()
    assert logged.exc_info[1] is error


def test_each_record_recovery_could_not_finish_is_logged(
        drv, monkeypatch, caplog):
    outcomes = [recover.Outcome(RECORD, 'failed', 'ImageBusy'),
                recover.Outcome(RECORD, 'rolled back', 'the copy went')]
    monkeypatch.setattr(recover, 'recover', mock.Mock(return_value=outcomes))
    caplog.set_level(logging.WARNING)

    drv.do_setup(None)

    logged = [r.getMessage() for r in caplog.records
              if r.name == rbdmig_driver.__name__]
    assert logged == ['Could not recover %s; it stays in the journal for '
                      'the next recovery or "rbdmig recover".' % outcomes[0]]


@pytest.fixture
def interval():
    """Sets the backend's ``migration_recovery_interval`` for one test."""
    from oslo_config import cfg

    def set_to(seconds):
        cfg.CONF.set_override('migration_recovery_interval', seconds,
                              group='unit-setup')
    yield set_to
    cfg.CONF.clear_override('migration_recovery_interval',
                            group='unit-setup')


def _counting_recover(monkeypatch, rounds):
    """recover.recover, mocked: counts calls, sets ``rounds`` at 3."""
    calls = []

    def fake(backend, authority=None):
        calls.append(authority)
        if len(calls) == 3:
            rounds.set()
        return []
    monkeypatch.setattr(recover, 'recover', fake)
    return calls


def test_a_cluster_member_recovers_again_while_it_runs(
        drv, monkeypatch, interval):
    drv.cluster_name = 'aa@unit-setup'
    interval(1)
    rounds = threading.Event()
    calls = _counting_recover(monkeypatch, rounds)

    drv.do_setup(None)
    try:
        # At start, then once a second: the third call comes ~2 s later.
        assert rounds.wait(30), calls
    finally:
        drv.stop_recovery()
    done = len(calls)
    assert done >= 3
    assert all(isinstance(a, authority.CinderAuthority) for a in calls)
    assert drv._recovery_thread is None  # stopped: no further round
    assert len(calls) == done


@pytest.mark.parametrize('cluster, seconds', [(None, 1), ('aa@x', 0)])
def test_recovery_runs_only_at_start_outside_a_cluster_or_at_0(
        drv, monkeypatch, interval, cluster, seconds):
    drv.cluster_name = cluster
    interval(seconds)
    calls = _counting_recover(monkeypatch, threading.Event())

    drv.do_setup(None)

    assert drv._recovery_thread is None and len(calls) == 1


def test_a_failing_round_does_not_end_the_periodic_recovery(
        drv, monkeypatch, caplog, interval):
    drv.cluster_name = 'aa@unit-setup'
    interval(1)
    rounds = threading.Event()
    calls = []

    def flaky(backend, authority=None):
        calls.append(1)
        if len(calls) == 3:
            rounds.set()
        raise rados.Error('the cluster is away')
    monkeypatch.setattr(recover, 'recover', flaky)

    drv.do_setup(None)
    try:
        assert rounds.wait(30), calls
    finally:
        drv.stop_recovery()
    errors = [r for r in caplog.records if r.name == rbdmig_driver.__name__
              and r.levelno == logging.ERROR]
    assert len(errors) >= 3


class _Row(dict):
    """A volume row: its fields, ``update`` and ``save`` (counted)."""

    saves = 0

    def __getattr__(self, name):
        return self[name]

    def save(self):
        self.saves += 1


def test_a_row_moved_then_given_back_names_the_source_again(monkeypatch):
    # Seams review: a live move that told Cinder's row it moved, then
    # aborted (a client opened the image before librbd's commit), left
    # the row naming the destination while the image was in the source.
    from cinder import objects
    objects.register_all()  # as cinder-volume does at start
    row = _Row(host='h@a#a', cluster_name='aa@a#a', service_uuid='u-a',
               availability_zone='az-a')
    service = mock.Mock(cluster_name='aa@b', uuid='u-b',
                        availability_zone='az-b')
    monkeypatch.setattr(authority.objects.Volume, 'get_by_id',
                        lambda context, volume_id: row)
    monkeypatch.setattr(authority.objects.Service, 'get_by_args',
                        lambda context, host, binary: service)
    record = mock.Mock(id='m-1', volume_id='v-1', dest_host='h@b#b')
    told = authority.CinderAuthority(context=None)

    told.moved(record)
    assert (row.host, row.cluster_name, row.service_uuid) == (
        'h@b#b', 'aa@b#b', 'u-b')
    told.restored(record)
    assert dict(row) == dict(host='h@a#a', cluster_name='aa@a#a',
                             service_uuid='u-a', availability_zone='az-a')
    assert row.saves == 2
    told.restored(record)  # once only: nothing more to give back
    assert row.saves == 2


@pytest.mark.parametrize('row_host, named', [
    ('h@a#RBD', 'source'),   # another backend's pool of the same name
    ('h@b#RBD', 'dest'),
    (None, 'source'),
])
def test_the_row_names_the_destination_only_by_its_whole_host(
        monkeypatch, row_host, named):
    # Seams review: pools were compared by name alone, and Cinder's RBD
    # driver names its one pool after volume_backend_name ('RBD' unless
    # set): a row still on the source read as the destination.
    from cinder import objects

    from rbdmig.migration import phases

    objects.register_all()
    monkeypatch.setattr(authority.objects.Volume, 'get_by_id',
                        lambda context, volume_id: _Row(host=row_host))
    record = mock.Mock(id='m-1', volume_id='v-1', dest_host='h@b#RBD')
    assert authority.CinderAuthority(None).names(record) == {
        'source': phases.SOURCE, 'dest': phases.DEST}[named]
