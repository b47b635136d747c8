"""What a move undone after its source retired says of the source.

Where it is, not where it would be had the give-back worked: each place
that gives the source back (the retirement, the placing, the journaling
of the removal) runs as the give-back works, as renaming the source back
fails, and as removing the copy fails.  Faults are injected at named
crash points (the ``at_point`` fixture) or by the fake's failing calls,
never by sleeping.
"""

import errno

import pytest

from rbdmig import exception
from rbdmig.ceph import journal
from rbdmig.ceph import migrate
from rbdmig.ceph import recover
from rbdmig.migration import phases
from tests.unit import rbd_fixtures as fx

DATA = b'give back' * 8000


@pytest.fixture
def ceph():
    return fx.make_ceph()


def _journal(ceph):
    ioctx = ceph.rados.Rados(conffile=fx.CONF_A).open_ioctx('hdd')
    return journal.Journal(ceph.rados, ioctx)


def _images(ceph, pool):
    return sorted(ceph.clusters[fx.CONF_A].pools[pool])


class _Told(recover.Authority):
    """Records what it is told; ``moved`` fails with ``fails``, after
    saving (it names the copy from then on) when ``saves``."""

    def __init__(self, fails=None, saves=False):
        self.fails, self.saves = fails, saves
        self.calls = []
        self.named = phases.SOURCE

    def names(self, record):
        return self.named

    def moved(self, record):
        self.calls.append('moved')
        if self.saves:
            self.named = phases.DEST
        if self.fails is not None:
            raise self.fails

    def restored(self, record):
        self.calls.append('restored')
        self.named = phases.SOURCE

    def settle(self, record, decision):
        self.calls.append(decision)


# -- each place the source is given back from, and what triggers it -----------

def _retiring_fails(ceph, volume, at_point, give_back_fails):
    # Something fails just after the source was renamed to its retired
    # name (_retire's exception path).
    def fail():
        at_point['engine.copying'] = give_back_fails
        raise ceph.rbd.Error('the cluster said no')
    at_point['engine.retired'] = fail


def _client_on_retired(ceph, volume, at_point, give_back_fails):
    # A client holds the retired source (_retire's ``why`` path).
    def opens():
        pools = ceph.clusters[fx.CONF_A].pools
        (retired,) = [i for n, i in pools['hdd'].items()
                      if n.endswith('.retired')]
        retired.watchers.append({'id': 4242, 'addr': '10.9.9.9:0/1'})
        at_point['engine.copying'] = give_back_fails
    at_point['engine.retired'] = opens


def _name_taken(ceph, volume, at_point, give_back_fails):
    # Another image took the volume's name in the destination (_place,
    # ImageExists).
    def takes():
        ioctx = ceph.rados.Rados(conffile=fx.CONF_A).open_ioctx('ssd')
        ceph.rbd.RBD().create(ioctx, volume.name, 4096)
        at_point['engine.copying'] = give_back_fails
    at_point['engine.placed'] = takes


def _placing_fails(ceph, volume, at_point, give_back_fails):
    # Renaming the copy to the volume's name fails (_place, any error).
    def fails():
        ceph.fail('rename', ceph.rbd.Error('the cluster said no'), times=1)
        at_point['engine.copying'] = give_back_fails
    at_point['engine.placed'] = fails


def _moved_fails(ceph, volume, at_point, give_back_fails):
    # Telling the authority fails (_place, authority.moved).
    def arm():
        at_point['engine.copying'] = give_back_fails
    at_point['engine.placed'] = arm
    return _Told(fails=ConnectionError('the database went away'))


def _removing_unjournaled(ceph, volume, at_point, give_back_fails):
    # Journaling ``removing`` fails (_remove_source).
    def fails():
        ceph.fail('operate_write_op',
                  ceph.rados.Error('OSD said no', errno=errno.EIO), times=1)
        at_point['engine.copying'] = give_back_fails
    at_point['engine.placed'] = fails


SITES = {
    'retiring fails': (_retiring_fails, exception.MigrationError,
                       'retiring the source failed'),
    'a client holds the retired source': (
        _client_on_retired, exception.MigrationRefused,
        'a client opened its image'),
    'the name is taken': (_name_taken, exception.MigrationRefused,
                          'an image named'),
    'placing fails': (_placing_fails, exception.MigrationError,
                      'could not take the name'),
    'telling the authority fails': (_moved_fails, exception.MigrationError,
                                    'recording that failed'),
    'journaling the removal fails': (_removing_unjournaled,
                                     exception.MigrationError,
                                     'journaling the removal'),
}


def _migrate(ceph, at_point, site, give_back_fails=lambda: None):
    """Run the move into ``site``'s fault; return ``(backend, volume,
    error, authority)``, the error the move raised."""
    arm = SITES[site][0]
    src = fx.make_driver(ceph, pool='hdd', rbd_migration_method='copy')
    dst = fx.make_driver(ceph, pool='ssd', backend='fast')
    volume = fx.make_volume(ceph, data=DATA)
    told = arm(ceph, volume, at_point, give_back_fails) or _Told()
    with pytest.raises(exception.MigrationError) as raised:
        migrate.migrate(src.backend(), volume, fx.host_of(dst),
                        authority=told)
    return src.backend(), volume, raised.value, told


def _theirs(ceph, site, volume):
    """What the destination holds that is not the move's."""
    return [volume.name] if site == 'the name is taken' else []


def _recovered(ceph, site, backend, volume, authority):
    """Recovery finishes what the message said it would: the source is
    the volume again, nothing of the move left."""
    for image in ceph.clusters[fx.CONF_A].pools['hdd'].values():
        image.watchers.clear()  # the client went away

    outcomes = recover.recover(backend, authority=authority)

    assert [o.action for o in outcomes] == ['rolled back']
    assert _images(ceph, 'hdd') == [volume.name]
    assert fx.read_head(ceph, 'hdd', volume.name, len(DATA)) == DATA
    assert _images(ceph, 'ssd') == _theirs(ceph, site, volume)
    assert _journal(ceph).records() == []


# -- the give-back works: the source is intact, and the error says so ---------

@pytest.mark.parametrize('site', sorted(SITES))
def test_a_source_given_back_is_said_intact_under_its_name(
        ceph, at_point, site):
    _, volume, error, _ = _migrate(ceph, at_point, site)

    kind, why = SITES[site][1:]
    assert type(error) is kind
    message = str(error)
    assert why in message
    assert 'intact under its name in pool hdd' in message
    assert 'was removed' in message
    assert 'rbdmig recover' not in message
    assert _images(ceph, 'hdd') == [volume.name]
    assert fx.read_head(ceph, 'hdd', volume.name, len(DATA)) == DATA
    assert _images(ceph, 'ssd') == _theirs(ceph, site, volume)
    assert _journal(ceph).records() == []


# -- renaming the source back fails: it is still retired ----------------------

@pytest.mark.parametrize('site', sorted(SITES))
def test_a_source_not_given_its_name_back_is_said_retired(
        ceph, at_point, site):
    def rename_fails():
        ceph.fail('rename', ceph.rbd.Error('the cluster said no'), times=1)

    backend, volume, error, told = _migrate(ceph, at_point, site,
                                            rename_fails)

    # Never Unsafe (MigrationRefused: "the source is intact"): the source
    # is not whole under its name.
    assert type(error) is exception.MigrationError
    message = str(error)
    assert SITES[site][2] in message
    (left,) = _journal(ceph).records()
    assert _images(ceph, 'hdd') == [left.retired]
    assert 'under its retired name %s' % left.retired in message
    assert "out of clients' reach" in message
    assert 'rbdmig recover' in message
    assert 'intact' not in message
    assert 'was removed' not in message

    _recovered(ceph, site, backend, volume, told)


# -- removing the copy fails: the source has its name, the copy is left -------

@pytest.mark.parametrize('site', sorted(SITES))
def test_a_copy_not_removed_is_said_left_to_recovery(ceph, at_point, site):
    def removal_fails():
        ceph.fail('remove', ceph.rbd.Error('the cluster said no'), times=1)

    backend, volume, error, told = _migrate(ceph, at_point, site,
                                            removal_fails)

    assert type(error) is exception.MigrationError
    message = str(error)
    assert SITES[site][2] in message
    assert _images(ceph, 'hdd') == [volume.name]
    assert 'intact under its name in pool hdd' in message
    assert 'retired' not in message
    assert 'rbdmig recover' in message
    assert 'removes what the move built in pool ssd' in message
    assert 'was removed' not in message
    assert len(_images(ceph, 'ssd')) == 1 + len(_theirs(ceph, site, volume))

    _recovered(ceph, site, backend, volume, told)


# -- the give-back cannot even journal: recovery decides ----------------------

def test_a_give_back_not_journaled_after_the_authority_saved_says_so(
        ceph, at_point):
    # The authority saved the copy as the volume; journaling ``removing``
    # fails, and so does the give-back's own journal write: nothing is
    # touched, and recovery, the authority naming the copy, completes the
    # move.  The error does not promise the source back.
    src = fx.make_driver(ceph, pool='hdd', rbd_migration_method='copy')
    dst = fx.make_driver(ceph, pool='ssd', backend='fast')
    volume = fx.make_volume(ceph, data=DATA)
    told = _Told(saves=True)
    at_point['engine.placed'] = lambda: ceph.fail(
        'operate_write_op', ceph.rados.Error('OSD said no', errno=errno.EIO),
        times=2)

    with pytest.raises(exception.MigrationError) as raised:
        migrate.migrate(src.backend(), volume, fx.host_of(dst),
                        authority=told)

    assert type(raised.value) is exception.MigrationError
    message = str(raised.value)
    (left,) = _journal(ceph).records()
    assert left.phase == journal.PLACED
    assert 'under its retired name %s' % left.retired in message
    assert 'intact' not in message
    assert 'gives it its name back' not in message
    assert 'forward to the copy' in message

    outcomes = recover.recover(src.backend(), authority=told)

    assert [o.action for o in outcomes] == ['completed']
    assert _images(ceph, 'hdd') == []
    assert fx.read_head(ceph, 'ssd', volume.name, len(DATA)) == DATA
    assert _journal(ceph).records() == []


def test_a_give_back_whose_record_was_taken_over_says_so(ceph, at_point):
    # A recovery took the record over (ended it, the image claimed anew)
    # as the copy took the name: journaling ``removing`` is refused, and
    # so is the give-back's own write, which then touches nothing.  The
    # error says so, not that the source is back or will be.
    src = fx.make_driver(ceph, pool='hdd', rbd_migration_method='copy')
    dst = fx.make_driver(ceph, pool='ssd', backend='fast')
    volume = fx.make_volume(ceph, data=DATA)
    taken = []

    def take_over():
        record = _journal(ceph).get(volume.name)
        _journal(ceph).finish(record)
        successor = journal.Record.new(volume.name, 'copy', 'hdd',
                                       record.dest)
        _journal(ceph).claim(successor)
        taken.append(successor)
    at_point['engine.placed'] = take_over

    with pytest.raises(exception.MigrationError) as raised:
        migrate.migrate(src.backend(), volume, fx.host_of(dst))

    assert type(raised.value) is exception.MigrationError
    message = str(raised.value)
    assert 'taken over' in message
    assert 'intact' not in message
    assert 'gives it its name back' not in message
    assert [r.id for r in _journal(ceph).records()] == [taken[0].id]


# -- before the source retires: a client found, the copy not removed ----------

@pytest.mark.parametrize('removal_fails', [False, True])
def test_a_client_found_before_retiring_says_where_the_copy_is(
        ceph, at_point, removal_fails):
    src = fx.make_driver(ceph, pool='hdd', rbd_migration_method='copy')
    dst = fx.make_driver(ceph, pool='ssd', backend='fast')
    volume = fx.make_volume(ceph, data=DATA)
    source = ceph.image(fx.CONF_A, 'hdd', volume.name)

    def client_opens():
        source.watchers.append({'id': 4242, 'addr': '10.9.9.9:0/1'})
        if removal_fails:
            ceph.fail('remove', ceph.rbd.Error('the cluster said no'),
                      times=1)
    at_point['engine.copied'] = client_opens

    with pytest.raises(exception.MigrationRefused) as raised:
        src.migrate_volume(None, volume, fx.host_of(dst))

    message = str(raised.value)
    assert 'a client opened its image' in message
    assert 'intact under its name in pool hdd' in message
    assert _images(ceph, 'hdd') == [volume.name]
    if removal_fails:
        assert 'was removed' not in message
        assert 'rbdmig recover' in message
        assert len(_images(ceph, 'ssd')) == 1
        source.watchers.clear()
        outcomes = recover.recover(src.backend())
        assert [o.action for o in outcomes] == ['rolled back']
    else:
        assert 'was removed' in message
    assert _images(ceph, 'ssd') == []
    assert _journal(ceph).records() == []
