"""do_setup: recovery that fails never keeps the backend from starting."""

import logging
from unittest import mock

import pytest
import rados
from cinder.volume import configuration
from cinder.volume.drivers import rbd as cinder_rbd

from rbdmig.ceph import journal
from rbdmig.ceph import recover
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
                      'the next start or "rbdmig recover".' % outcomes[0]]
