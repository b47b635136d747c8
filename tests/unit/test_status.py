"""rbdmig status against fake librados/librbd: config, numbers, output."""

import argparse
import io
import json
import os
import socket

import pytest

from rbdmig import exception
from rbdmig import faults
from rbdmig.ceph import journal
from rbdmig.ceph import liveness
from rbdmig.ceph import location
from rbdmig.ceph import status
from rbdmig.cmd import status as status_cmd
from tests.unit import rbd_fixtures as fx

DATA = os.urandom(64 * 1024)
SECRET = 'AQBw2JlkAAAAABAAsecretsecretsecretsecret=='
CINDER_CONF = """\
[DEFAULT]
enabled_backends = hdd,ssd,lvm,old
transport_url = rabbit://cinder:hunter2@rabbit:5672/

[backend_defaults]
rbd_ceph_conf = %(conf)s
rbd_user = cinder

[hdd]
volume_driver = cinder.volume.drivers.rbd.RBDDriver
rbd_pool = hdd
rbd_secret_uuid = 457eb676-33da-42ec-9a8c-9293d545c337
rbd_keyring_conf = /etc/ceph/ceph.client.cinder.keyring

[ssd]
volume_driver = rbdmig.cinder.RBDDriver
rbd_pool = ssd

[lvm]
volume_driver = cinder.volume.drivers.lvm.LVMVolumeDriver
volume_group = cinder-volumes

[old]
# A second section on the pool of [hdd]: read once.
volume_driver = cinder.volume.drivers.rbd.RBDDriver
rbd_pool = hdd
rbd_keyring_conf = /etc/ceph/ceph.client.cinder.keyring
"""


@pytest.fixture
def ceph():
    return fx.make_ceph()


@pytest.fixture
def cinder_conf(tmp_path):
    path = tmp_path / 'cinder.conf'
    path.write_text(CINDER_CONF % {'conf': fx.CONF_A})
    return str(path)


def _status(ceph, paths, fmt='json', clock=None):
    out, err = io.StringIO(), io.StringIO()
    args = argparse.Namespace(config_file=list(paths), format=fmt,
                              timeout=5)
    kwargs = {'clock': clock} if clock else {}
    code = status_cmd.run(args, out=out, err=err, rados_module=ceph.rados,
                          **kwargs)
    return code, out.getvalue(), err.getvalue()


def _journal(ceph, pool='hdd'):
    ioctx = ceph.rados.Rados(conffile=fx.CONF_A).open_ioctx(pool)
    return journal.Journal(ceph.rados, ioctx)


def _claimed(ceph, client=4242):
    """A record claimed by a client that holds no watch, and written
    progress: 256 of 1024 MiB at 16 MiB/s, last at 1000 s."""
    dest = location.LocationInfo('ceph', fx.CONF_A, fx.FSID, 'cinder',
                                 'ssd')._asdict()
    record = journal.Record.new('volume-7', 'extents', 'hdd', dest)
    record.volume_id, record.clients = '7', {'source': client}
    record.started = 900.0
    pool_journal = _journal(ceph)
    pool_journal.claim(record)
    pool_journal.update(record, journal.COPYING)
    record.updated = 990.0  # the phase changed at 990 s
    pool_journal._write(pool_journal.oid(record),
                        lambda op: op.write_full(record.to_bytes()))
    pool_journal.report(record, {
        'bytes_done': 256 * fx.MiB, 'bytes_total': 1024 * fx.MiB,
        'rate': 16.0 * fx.MiB, 'started': 984.0, 'updated': 1000.0,
        'host': 'node-3', 'method': 'extents'})
    return record


def test_cinder_conf_rbd_sections_are_found_and_no_secret_is_read(
        cinder_conf):
    found = status.sources([cinder_conf])

    assert [(s.backend, s.pool) for s in found] == [('hdd', 'hdd'),
                                                   ('ssd', 'ssd')]
    hdd, ssd = found
    assert hdd.address.conf == fx.CONF_A == ssd.address.conf
    assert hdd.address.user == 'cinder' and hdd.address.cluster_name == (
        'ceph')
    assert hdd.address.keyring == '/etc/ceph/ceph.client.cinder.keyring'
    assert ssd.address.keyring is None
    said = json.dumps([s.describe() for s in found])
    assert '457eb676' not in said and 'hunter2' not in said


def test_rbdmig_conf_and_cinder_conf_together(tmp_path, cinder_conf):
    own = tmp_path / 'rbdmig.conf'
    own.write_text('[DEFAULT]\nenabled_backends = fast,files\n'
                   '[fast]\nvolume_driver = '
                   'rbdmig.volume.drivers.rbd.RBDDriver\n'
                   'rbd_ceph_conf = /etc/ceph/b.conf\nrbd_pool = hdd\n'
                   '[files]\nvolume_driver = '
                   'rbdmig.volume.drivers.file.FileDriver\n')

    found = status.sources([str(own), cinder_conf])

    assert [(s.backend, s.address.conf, s.pool) for s in found] == [
        ('fast', fx.CONF_B, 'hdd'), ('hdd', fx.CONF_A, 'hdd'),
        ('ssd', fx.CONF_A, 'ssd')]
    # Read as one config, as oslo.config reads several files:
    # [backend_defaults] is every section's.
    assert found[0].address.user == 'cinder'
    assert status.sources([str(own)])[0].address.user is None


def test_an_unreadable_config_file_is_refused(tmp_path):
    with pytest.raises(exception.InvalidInput, match='cannot read'):
        status.sources([str(tmp_path / 'missing.conf')])


def test_percent_rate_time_left_and_a_stranded_record(ceph, cinder_conf):
    record = _claimed(ceph)

    code, out, _ = _status(ceph, [cinder_conf], clock=lambda: 1012.0)

    assert code == 0
    result = json.loads(out)
    assert result['errors'] == []
    [found] = result['migrations']
    assert found == {
        'backend': 'hdd', 'migration': record.id, 'volume': '7',
        'image': 'volume-7', 'source': 'hdd', 'destination': 'ssd',
        'destination_host': None, 'phase': 'copying', 'method': 'extents',
        'percent': 25.0, 'bytes_done': 256 * fx.MiB,
        'bytes_total': 1024 * fx.MiB, 'rate': 16.0 * fx.MiB,
        # Nothing runs it: no time left is promised.
        'eta': None, 'host': 'node-3', 'service': None, 'started': 900.0,
        'updated': 1000.0, 'age': 12.0, 'stranded': True}


def test_a_watched_record_is_running_with_its_time_left(ceph, cinder_conf):
    record = _claimed(ceph)
    ceph.watches[('hdd', journal.RECORD_PREFIX + 'volume-7')] = [
        {'client': 4242, 'addr': '10.0.0.9:0/7'}]
    # A client that is not the migrating one says nothing of it.
    ceph.watches[('hdd', journal.RECORD_PREFIX + 'volume-7')].append(
        {'client': 1, 'addr': '10.0.0.1:0/1'})

    found = status.Migration('hdd', record, _journal(ceph).progress(record),
                             True).as_dict(now=1012.0)
    assert found['stranded'] is False
    assert found['eta'] == 48.0  # 768 MiB at 16 MiB/s
    assert found['age'] == 12.0
    code, out, _ = _status(ceph, [cinder_conf], clock=lambda: 1e10)
    assert json.loads(out)['migrations'][0]['stranded'] is False

    ceph.watches[('hdd', journal.RECORD_PREFIX + 'volume-7')].pop(0)
    code, out, _ = _status(ceph, [cinder_conf], clock=lambda: 1e10)
    assert json.loads(out)['migrations'][0]['stranded'] is True


def test_watchers_that_cannot_be_listed_leave_stranded_unknown(
        ceph, cinder_conf, monkeypatch):
    _claimed(ceph)

    def cannot(*args, **kwargs):
        raise exception.VolumeBackendAPIException(data='no rados tool')

    monkeypatch.setattr(liveness, 'watchers', cannot)
    code, out, _ = _status(ceph, [cinder_conf], fmt='table')
    assert code == 0
    header, row = out.splitlines()
    assert header.split() == ['BACKEND', 'IMAGE', 'SOURCE', '->',
                              'DESTINATION', 'PHASE', 'METHOD', 'DONE',
                              'RATE', 'LEFT', 'HOST', 'UPDATED', 'STRANDED']
    assert row.split()[-1] == 'unknown'


def test_the_table_says_it_in_words(ceph, cinder_conf):
    _claimed(ceph)
    ceph.watches[('hdd', journal.RECORD_PREFIX + 'volume-7')] = [
        {'client': 4242, 'addr': '10.0.0.9:0/7'}]

    code, out, _ = _status(ceph, [cinder_conf], fmt='table',
                           clock=lambda: 1e12)

    row = out.splitlines()[1].split()
    assert row[:6] == ['hdd', 'volume-7', 'hdd', '->', 'ssd', 'copying']
    assert row[6:11] == ['extents', '25.0%', '16.0', 'MiB/s', '48s']
    assert row[11] == 'node-3' and row[-1] == 'no'


def test_the_service_running_it_is_shown_with_its_host(ceph, cinder_conf):
    """Several cinder-volume services (an active-active cluster's
    members) may share a machine: the record names which runs it."""
    record = _claimed(ceph)
    record.service = 'node-3b@hdd'
    pool_journal = _journal(ceph)
    pool_journal._write(pool_journal.oid(record),
                        lambda op: op.write_full(record.to_bytes()))

    _, out, _ = _status(ceph, [cinder_conf])
    [found] = json.loads(out)['migrations']
    assert (found['host'], found['service']) == ('node-3', 'node-3b@hdd')
    _, out, _ = _status(ceph, [cinder_conf], fmt='table')
    assert out.splitlines()[1].split()[11:13] == ['node-3', '(node-3b@hdd)']


def test_no_migration_says_so(ceph, cinder_conf):
    code, out, _ = _status(ceph, [cinder_conf], fmt='table')
    assert (code, out) == (0, 'no migration running or stranded in 2 RBD '
                              'backend(s)\n')


def test_an_unreachable_backend_is_an_error_and_the_others_are_read(
        ceph, cinder_conf, tmp_path):
    _claimed(ceph)
    extra = tmp_path / 'extra.conf'
    extra.write_text('[gone]\nvolume_driver = rbdmig.cinder.RBDDriver\n'
                     'rbd_ceph_conf = /etc/ceph/gone.conf\n')

    code, out, _ = _status(ceph, [cinder_conf, str(extra)])
    result = json.loads(out)
    assert code == 1
    assert [m['image'] for m in result['migrations']] == ['volume-7']
    assert [e['backend'] for e in result['errors']] == ['gone']

    code, out, err = _status(ceph, [cinder_conf, str(extra)], fmt='table')
    assert code == 1 and 'volume-7' in out
    assert err.startswith('rbdmig status: gone: ')


def test_a_running_move_is_listed_with_its_progress(ceph, cinder_conf,
                                                    monkeypatch):
    src = fx.make_driver(ceph, pool='hdd', rbd_migration_method='extents',
                         migration_progress_report_interval=3600)
    dst = fx.make_driver(ceph, pool='ssd', backend='fast')
    volume = fx.make_volume(ceph, data=DATA)
    seen = []

    def look(name):
        if name == 'engine.copied':
            seen.append(_status(ceph, [cinder_conf]))

    monkeypatch.setattr(faults.POINTS, 'hook', look)
    assert src.migrate_volume(None, volume, fx.host_of(dst)) == (True, None)

    [(code, out, _)] = seen
    [found] = json.loads(out)['migrations']
    assert found['image'] == volume.name and found['volume'] == volume.id
    assert (found['phase'], found['method']) == ('copying', 'extents')
    assert found['percent'] == 100.0 and found['eta'] == 0.0
    assert found['bytes_total'] == 8 * fx.MiB
    assert found['host'] == socket.gethostname()
    assert found['destination_host'] == fx.host_of(dst)['host']
    assert found['stranded'] is False  # its process watches the record
    assert json.loads(_status(ceph, [cinder_conf])[1])['migrations'] == []


def test_a_destination_in_another_cluster_is_named_with_its_fsid():
    dest = location.LocationInfo('ceph', fx.CONF_B, fx.OTHER_FSID, 'admin',
                                 'hdd')._asdict()
    record = journal.Record.new('volume-9', 'extents', 'hdd', dest)
    found = status.Migration('hdd', record, None, True, local_fsid=fx.FSID)

    row = found.as_dict(now=record.started + 5)
    assert row['destination'] == 'hdd@%s' % fx.OTHER_FSID
    # No progress written yet (the copy has not begun).
    assert (row['percent'], row['rate'], row['eta']) == (None, None, None)
    assert row['age'] == 5 and row['stranded'] is False
    assert status_cmd._row(row)['DONE'] == '-'
