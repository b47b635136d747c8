"""Cinder's volume row as the authority: moved, put back, settled."""

import importlib.util
import os
import sys
import types

import pytest

from rbdmig import exception
from rbdmig.ceph import journal
from rbdmig.ceph import migrate
from rbdmig.ceph import recover
from rbdmig.migration import phases
from tests.unit import rbd_fixtures as fx

DATA = b'cinder row' * 6000
SOURCE_HOST = 'node@be#hdd'
DEST_HOST = 'node@fast#ssd'
# cinder-volume services, by ``host@backend``: (cluster, uuid, zone).
SERVICES = {'node@be': ('cl-be', 'uuid-be', 'zone-a'),
            'node@fast': ('cl-fast', 'uuid-fast', 'zone-b')}


@pytest.fixture
def ceph():
    return fx.make_ceph()


def _row_fields(host=SOURCE_HOST):
    """A volume row as Cinder's table holds it, on the source."""
    return {'host': host, 'cluster_name': 'cl-be#hdd',
            'service_uuid': 'uuid-be', 'availability_zone': 'zone-a',
            'migration_status': 'migrating', 'status': 'available',
            'previous_status': None}


class Table(dict):
    """Cinder's volume table: rows' fields by volume id.  ``failures``:
    what the next saves raise, ``(committed, exception)`` each."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.failures = []


class Row(object):
    """A volume row as ``objects.Volume.get_by_id`` returns it: read
    from the table, changed in memory, written back by :meth:`save`."""

    def __init__(self, table, volume_id):
        self._table, self.id = table, volume_id
        self.__dict__.update(table[volume_id])

    def update(self, values):
        self.__dict__.update(values)

    def save(self):
        committed, error = (self._table.failures.pop(0)
                            if self._table.failures else (True, None))
        if committed:
            self._table[self.id] = {k: getattr(self, k)
                                    for k in self._table[self.id]}
        if error is not None:
            raise error


@pytest.fixture
def authority(monkeypatch):
    """``authority(table)``: a CinderAuthority reading ``table`` (a
    :class:`Table`), loaded against a stand-in for Cinder (not installed
    for the unit tests)."""

    class VolumeNotFound(Exception):
        pass

    class ServiceNotFound(Exception):
        pass

    tables = {}

    def get_by_id(context, volume_id):
        if volume_id not in tables['rows']:
            raise VolumeNotFound(volume_id)
        return Row(tables['rows'], volume_id)

    def get_by_args(context, host, binary):
        try:
            cluster, uuid, zone = SERVICES[host]
        except KeyError:
            raise ServiceNotFound(host)
        return types.SimpleNamespace(cluster_name=cluster, uuid=uuid,
                                     availability_zone=zone)

    def extract_host(host, level='backend'):
        return host.split('#')[0] if level == 'backend' else (
            host.partition('#')[2] or None)

    cinder = types.ModuleType('cinder')
    cinder.exception = types.SimpleNamespace(
        VolumeNotFound=VolumeNotFound, ServiceNotFound=ServiceNotFound)
    cinder.objects = types.SimpleNamespace(
        Volume=types.SimpleNamespace(get_by_id=get_by_id),
        Service=types.SimpleNamespace(get_by_args=get_by_args))
    volume = types.ModuleType('cinder.volume')
    volume.volume_utils = types.SimpleNamespace(
        extract_host=extract_host,
        append_host=lambda host, pool: '%s#%s' % (host, pool))
    cinder.volume = volume
    for name, module in (('cinder', cinder), ('cinder.volume', volume),
                         ('cinder.volume.volume_utils',
                          volume.volume_utils)):
        monkeypatch.setitem(sys.modules, name, module)
    path = os.path.join(os.path.dirname(recover.__file__), os.pardir,
                        'cinder', 'authority.py')
    spec = importlib.util.spec_from_file_location(
        'rbdmig_test_cinder_authority', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def make(table):
        tables['rows'] = table
        return module.CinderAuthority(None, 'node@be')
    return make


def _journal(ceph, pool='hdd'):
    ioctx = ceph.rados.Rados(conffile=fx.CONF_A).open_ioctx(pool)
    return journal.Journal(ceph.rados, ioctx)


def _images(ceph, pool):
    return sorted(ceph.clusters[fx.CONF_A].pools[pool])


def _on_source(row):
    return {k: row[k] for k in ('host', 'cluster_name', 'service_uuid',
                                'availability_zone')} == {
        'host': SOURCE_HOST, 'cluster_name': 'cl-be#hdd',
        'service_uuid': 'uuid-be', 'availability_zone': 'zone-a'}


@pytest.mark.parametrize('method', ['copy', 'live'])
def test_a_move_undone_whose_row_could_not_be_put_back_is_by_recovery(
        ceph, authority, method):
    # The row was moved (the save committed, its answer lost), the move
    # gave the source back, and putting the row back failed too: the
    # record stays, and recovery, in another process (an authority that
    # never saw the row as it was), puts the row back from the record.
    src = fx.make_driver(ceph, pool='hdd', rbd_migration_method=method)
    dst = fx.make_driver(ceph, pool='ssd', backend='fast')
    volume = fx.make_volume(ceph, data=DATA, host=SOURCE_HOST)
    table = Table({volume.id: _row_fields()})
    table.failures = [(True, ConnectionError('the answer was lost')),
                      (False, ConnectionError('the database went away'))]

    with pytest.raises(exception.MigrationError, match='recording that'):
        migrate.migrate(src.backend(), volume,
                        dict(fx.host_of(dst), host=DEST_HOST),
                        authority=authority(table))
    assert table[volume.id]['host'] == DEST_HOST
    (left,) = _journal(ceph).records()
    assert left.source_host == SOURCE_HOST

    outcomes = recover.recover(src.backend(), authority=authority(table))

    assert [o.action for o in outcomes] == [
        'released' if method == 'live' else 'rolled back']
    assert _on_source(table[volume.id]), table
    assert table[volume.id]['migration_status'] == 'error'
    assert fx.read_head(ceph, 'hdd', volume.name, len(DATA)) == DATA
    assert _images(ceph, 'ssd') == []
    assert _journal(ceph).records() == []


def test_an_aborted_live_move_killed_before_telling_the_row_is_put_back(
        ceph, authority, monkeypatch):
    class Killed(BaseException):
        pass

    src = fx.make_driver(ceph, pool='hdd', rbd_migration_method='live')
    dst = fx.make_driver(ceph, pool='ssd', backend='fast')
    volume = fx.make_volume(ceph, data=DATA, host=SOURCE_HOST)
    table = Table({volume.id: _row_fields()})
    ceph.fail('migration_commit', ceph.rbd.ImageBusy('watcher appeared'),
              times=1)
    told = authority(table)

    def killed(record):
        raise Killed('aborted, the row not told yet')

    monkeypatch.setattr(told, 'restored', killed)
    with pytest.raises(Killed):
        migrate.migrate(src.backend(), volume,
                        dict(fx.host_of(dst), host=DEST_HOST),
                        authority=told)
    assert table[volume.id]['host'] == DEST_HOST

    outcomes = recover.recover(src.backend(), authority=authority(table))

    assert [o.action for o in outcomes] == ['released']
    assert _on_source(table[volume.id]), table
    assert table[volume.id]['migration_status'] == 'error'
    assert fx.read_head(ceph, 'hdd', volume.name, len(DATA)) == DATA
    assert _journal(ceph).records() == []


def test_a_move_that_stood_with_its_record_left_keeps_the_row_moved(
        ceph, authority, monkeypatch):
    # Closing the record failed after the source was removed: the move
    # returned True and Cinder's manager recorded it.  Recovery of the
    # record left completes it; releasing it would put the row back on
    # the source, where nothing is.
    src = fx.make_driver(ceph, pool='hdd', rbd_migration_method='copy')
    dst = fx.make_driver(ceph, pool='ssd', backend='fast')
    volume = fx.make_volume(ceph, data=DATA, host=SOURCE_HOST)
    table = Table({volume.id: _row_fields()})

    def timed_out(self, record):
        raise ceph.rados.TimedOut('record removal timed out')

    with monkeypatch.context() as patch:
        patch.setattr(journal.Journal, 'finish', timed_out)
        assert migrate.migrate(
            src.backend(), volume, dict(fx.host_of(dst), host=DEST_HOST),
            authority=authority(table)) == (True, None)
    table[volume.id]['migration_status'] = 'success'  # Cinder's manager

    outcomes = recover.recover(src.backend(), authority=authority(table))

    assert [o.action for o in outcomes] == ['completed']
    row = table[volume.id]
    assert (row['host'], row['cluster_name'], row['migration_status']) == (
        DEST_HOST, 'cl-fast#ssd', 'success')
    assert _images(ceph, 'hdd') == []
    assert fx.read_head(ceph, 'ssd', volume.name, len(DATA)) == DATA
    assert _journal(ceph).records() == []


def _record(volume_id, source_host=SOURCE_HOST):
    record = journal.Record.new('volume-%s' % volume_id, 'copy', 'hdd', {})
    record.volume_id = volume_id
    record.dest_host, record.source_host = DEST_HOST, source_host
    return record


@pytest.mark.parametrize('decision', [phases.RELEASE, phases.ROLL_BACK,
                                      phases.RESTORE])
def test_an_undoing_settle_puts_a_moved_row_back(authority, decision):
    table = Table(v1=_row_fields(host=DEST_HOST))

    authority(table).settle(_record('v1'), decision)

    assert _on_source(table['v1']), table
    assert table['v1']['migration_status'] == 'error'


@pytest.mark.parametrize('decision', [phases.COMPLETE, phases.ADOPT,
                                      phases.KEEP])
def test_a_settle_that_does_not_undo_never_names_the_source(authority,
                                                           decision):
    table = Table(v1=_row_fields(host=DEST_HOST))

    authority(table).settle(_record('v1'), decision)

    assert table['v1']['host'] == DEST_HOST


def test_a_row_naming_another_host_is_left_naming_it(authority):
    # Not the move's destination: nothing the move told it.
    table = Table(v1=_row_fields(host='node@other#pool'))

    authority(table).settle(_record('v1'), phases.ROLL_BACK)

    assert (table['v1']['host'], table['v1']['migration_status']) == (
        'node@other#pool', 'error')


def test_a_record_without_the_source_host_leaves_the_row_and_says_so(
        authority, caplog):
    table = Table(v1=_row_fields(host=DEST_HOST))

    authority(table).settle(_record('v1', source_host=None),
                            phases.ROLL_BACK)

    assert (table['v1']['host'], table['v1']['migration_status']) == (
        DEST_HOST, 'error')
    assert 'set it by hand' in caplog.text


@pytest.mark.parametrize('service', ['node@be', None])
def test_a_record_without_the_source_host_says_what_to_set_by_hand(
        authority, caplog, service):
    # Journaled before rbdmig kept the source's host: the record names
    # the Ceph pool, not Cinder's ``host@backend#pool`` (its pool part is
    # the backend's pool name, and in a cluster the row's host may be
    # any member's), so nothing is guessed.  The log says which volume,
    # which of its row's fields, and what they must name.
    table = Table(v1=_row_fields(host=DEST_HOST))
    record = _record('v1', source_host=None)
    record.service = service

    authority(table).settle(record, phases.ROLL_BACK)

    assert table['v1']['host'] == DEST_HOST
    (said,) = [r.getMessage() for r in caplog.records
               if r.levelname == 'ERROR']
    for words in ('volume v1', 'image %s' % record.image, 'pool hdd',
                  DEST_HOST, 'host@backend#pool', 'cluster_name',
                  'service_uuid', 'availability_zone'):
        assert words in said, words
    assert ('run by cinder-volume node@be' if service else
            'does not say which cinder-volume') in said


# -- every crash point, then its recovery too, the row told throughout -------

class Killed(BaseException):
    """A SIGKILL, in process: nothing of the code's own cleanup runs."""


SMALL = DATA[:40 << 10]
_SCENARIOS = {
    'copy': ['plain', 'a client opens the retired source',
             'the row\'s answer is lost'],
    'live': ['plain', 'the commit is refused', 'the row\'s answer is lost'],
}


def _killed_then_recovered(authority, method, scenario, kill, rkill):
    """Move under Cinder's row, killed at ``kill`` (``(point, nth)``; the
    row's saves are points too), recover (killed at ``rkill``), recover
    again.  Returns what is wrong, and the points each run reached."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        return _run(monkeypatch, authority, method, scenario, kill, rkill)


def _run(monkeypatch, authority, method, scenario, kill, rkill):
    from rbdmig import faults
    from rbdmig.ceph.methods import base
    from rbdmig.ceph.methods import clone_flatten
    from rbdmig.ceph.methods import live

    ceph = fx.make_ceph()
    src = fx.make_driver(ceph, pool='hdd', rbd_migration_method=method)
    dst = fx.make_driver(ceph, pool='ssd', backend='fast')
    volume = fx.make_volume(ceph, data=SMALL, host=SOURCE_HOST)
    table = Table({volume.id: _row_fields()})
    pools = ceph.clusters[fx.CONF_A].pools
    real_save = Row.save

    def save(row):
        faults.point('test.row.saving')
        real_save(row)
        faults.point('test.row.saved')

    monkeypatch.setattr(Row, 'save', save)
    if scenario == 'the commit is refused':
        ceph.fail('migration_commit', ceph.rbd.ImageBusy('a client'),
                  times=1)
    if scenario == 'the row\'s answer is lost':
        table.failures = [(True, ConnectionError('the answer was lost'))]
    reached, counts, client = [], {}, []

    def engine(name):
        reached.append(name)
        counts[name] = counts.get(name, 0) + 1
        if scenario == 'a client opens the retired source' and (
                name == 'engine.retired'):
            client.extend(i for n, i in pools['hdd'].items()
                          if n.endswith('.retired'))
            client[0].watchers.append({'id': 4242, 'addr': '10.9.9.9:0/1'})
        if (name, counts[name]) == kill:
            for target in ('rbdmig.ceph.migrate._Migration._undo',
                           'rbdmig.ceph.migrate._Migration._give_back'):
                monkeypatch.setattr(target, lambda *a, **k: None)
            monkeypatch.setattr(base.Method, '_remove_partial',
                                lambda *a: None)
            monkeypatch.setattr(live.LiveMethod, '_abort', lambda *a: None)
            monkeypatch.setattr(clone_flatten, 'drop_snapshot',
                                lambda *a: None)
            raise Killed(name)

    returned = False
    with monkeypatch.context() as patch:
        patch.setattr(faults.POINTS, 'hook', engine)
        try:
            returned = migrate.migrate(
                src.backend(), volume, dict(fx.host_of(dst),
                                            host=DEST_HOST),
                authority=authority(table))[0]
        except (Killed, exception.RbdmigError):
            pass
    for image in client:
        image.watchers.clear()  # the client went away
    ceph._failures.pop('migration_commit', None)
    table.failures = []  # a fault of the move's, not of its recovery
    recovery, rcounts = [], {}

    def recovering(name):
        recovery.append(name)
        rcounts[name] = rcounts.get(name, 0) + 1
        if (name, rcounts[name]) == rkill:
            raise Killed(name)

    outcomes = []
    with monkeypatch.context() as patch:
        patch.setattr(faults.POINTS, 'hook', recovering)
        try:
            outcomes += recover.recover(src.backend(),
                                        authority=authority(table))
        except Killed:
            pass
    outcomes += recover.recover(src.backend(), authority=authority(table))

    wrong = []
    ours = [p for p in ('hdd', 'ssd') if volume.name in pools[p]]
    row = table[volume.id]
    if len(ours) != 1:
        wrong.append('the volume is in %s' % (ours or 'no pool'))
    elif fx.read_head(ceph, ours[0], volume.name, len(SMALL)) != SMALL:
        wrong.append('its data differ')
    elif row['host'] != {'hdd': SOURCE_HOST, 'ssd': DEST_HOST}[ours[0]]:
        wrong.append('the row names %s, the volume is in %s'
                     % (row['host'], ours[0]))
    if returned and ours != ['ssd']:
        wrong.append('the move returned, the volume is in %s' % ours)
    leftovers = [n for p in ('hdd', 'ssd') for n in pools[p]
                 if n != volume.name]
    if leftovers:
        wrong.append('left over: %s' % leftovers)
    if _journal(ceph).records():
        wrong.append('a record stays')
    if wrong:
        wrong.append('(recovery: %s)' % [o.action for o in outcomes])
    return wrong, reached, recovery


@pytest.mark.parametrize('method,scenario', [
    (method, scenario) for method, scenarios in sorted(_SCENARIOS.items())
    for scenario in scenarios])
def test_killed_anywhere_the_row_names_where_the_volume_is(
        authority, method, scenario):
    # The move killed at each point it reaches (the row's saves
    # included), its recovery killed at each of its own, then recovered
    # again: one copy, and Cinder's row naming its backend.
    _, points, _ = _killed_then_recovered(authority, method, scenario,
                                          None, None)
    failures, seen = [], {}
    for point in points:
        seen[point] = seen.get(point, 0) + 1
        kill = (point, seen[point])
        wrong, _, recovery = _killed_then_recovered(
            authority, method, scenario, kill, None)
        if wrong:
            failures.append((kill, None, wrong))
        rseen = {}
        for rpoint in recovery:
            rseen[rpoint] = rseen.get(rpoint, 0) + 1
            rkill = (rpoint, rseen[rpoint])
            wrong, _, _ = _killed_then_recovered(
                authority, method, scenario, kill, rkill)
            if wrong:
                failures.append((kill, rkill, wrong))
    assert len(points) >= 6
    assert failures == []


@pytest.mark.parametrize('decision', [phases.COMPLETE, phases.ADOPT])
def test_a_retype_completed_by_recovery_says_its_type_is_unrecorded(
        authority, caplog, decision):
    # Cinder's manager records a retype's new type once migrate_volume
    # returned: the process died first, and no driver is told the type.
    fields = dict(_row_fields(host=DEST_HOST), status='retyping',
                  previous_status='available', volume_type_id='old-type')
    table = Table(v1=fields)

    authority(table).settle(_record('v1'), decision)

    row = table['v1']
    assert (row['host'], row['status'], row['migration_status'],
            row['volume_type_id']) == (DEST_HOST, 'available', 'success',
                                       'old-type')
    assert ('volume v1 lives on %s now, but its volume type is still '
            'old-type' % DEST_HOST) in caplog.text
    assert 'cinder retype v1 <new type>' in caplog.text


def test_a_migration_completed_by_recovery_says_nothing_of_types(
        authority, caplog):
    table = Table(v1=_row_fields(host=DEST_HOST))

    authority(table).settle(_record('v1'), phases.COMPLETE)

    assert 'volume type' not in caplog.text
