"""migrate_volume given any location_info and any host: moves or refuses.

Property-based (hypothesis), against the fake Ceph of two clusters: A
(pools hdd, ssd) and B (pool hdd).  Whatever the destination looks like,
``RBDDriver.migrate_volume`` answers exactly ``(True, None)`` or
``(False, None)`` and never raises; ``(True, None)`` means the image is
in the pool location_info names, of the cluster whose fsid it names,
with the same data, and the source is gone (or, for the source's own
pool, nothing changed); ``(False, None)`` means nothing changed at all.
"""

import os
import uuid

from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.unit import rbd_fixtures as fx

# The number of generated examples per property (doc/reliability.rst).
LOCATION_EXAMPLES = 1000
HOST_EXAMPLES = 1000

DATA = os.urandom(64 * 1024) + b'tail'
VALID = 'ceph:%s:%s:admin:ssd' % (fx.CONF_A, fx.FSID)
OTHER_CLUSTER = 'ceph:%s:%s:admin:hdd' % (fx.CONF_B, fx.OTHER_FSID)
SAME_POOL = 'ceph:%s:%s:admin:hdd' % (fx.CONF_A, fx.FSID)

# -- strategies ---------------------------------------------------------------

# Any text, and text rich in control characters and lone surrogates
# (which st.text leaves out by default).
_weird = st.text(st.one_of(st.characters(),
                           st.characters(categories=['Cc', 'Cs'])),
                 max_size=20)
_known = st.sampled_from(['', 'None', 'ceph', 'hdd', 'ssd', 'admin',
                          fx.CONF_A, fx.CONF_B, fx.FSID, fx.OTHER_FSID,
                          fx.FSID.upper(), '..', '/', '\x00', '\n'])
_field = st.one_of(_known, _weird, st.uuids().map(str))


def _joined(n):
    return st.lists(_field, min_size=n, max_size=n).map(':'.join)


def _plausible():
    """Five fields, each either right for some backend or slightly off."""
    def one_of(*choices):
        return st.one_of(st.sampled_from(choices), _weird)
    return st.tuples(
        one_of('ceph', '', 'None', 'other'),
        one_of(fx.CONF_A, fx.CONF_B, '', 'None', '/etc/ceph/../ceph/a.conf',
               fx.CONF_A + '\x00', 'etc/ceph/a.conf'),
        st.one_of(st.sampled_from([fx.FSID, fx.OTHER_FSID, 'None', '',
                                   fx.FSID.upper(), '{%s}' % fx.FSID,
                                   fx.FSID.replace('-', '')]),
                  st.uuids().map(str), _weird),
        one_of('admin', '', 'None', 'cinder'),
        one_of('hdd', 'ssd', '', 'None', 'hdd\x00', 'ssd/x', 'rbd'),
    ).map(':'.join)


def _valid_ish():
    """Well-formed, of real and wrong pools and clusters, fsid written
    every way a UUID may be: these are the ones that move."""
    fsid_forms = st.sampled_from([str, str.upper, '{%s}'.__mod__,
                                  lambda f: f.replace('-', '')])
    where = st.sampled_from([
        (fx.CONF_A, fx.FSID, 'ssd'), (fx.CONF_A, fx.FSID, 'hdd'),
        (fx.CONF_B, fx.OTHER_FSID, 'hdd'), (fx.CONF_B, fx.FSID, 'hdd'),
        (fx.CONF_A, fx.OTHER_FSID, 'ssd'), (fx.CONF_A, fx.FSID, 'rbd'),
        (fx.CONF_B, fx.OTHER_FSID, 'ssd')])
    return st.builds(
        lambda cluster, dest, form, user: ':'.join(
            (cluster, dest[0], form(dest[1]), user, dest[2])),
        st.sampled_from(['ceph', '', 'None', 'other']), where, fsid_forms,
        st.sampled_from(['admin', '', 'None', 'cinder']))


def _huge():
    return st.one_of(
        st.integers(10 ** 4, 10 ** 6).map(lambda n: 'x' * n),
        st.integers(10 ** 4, 10 ** 6).map(
            lambda n: 'ceph:%s:%s:admin:%s' % (fx.CONF_A, fx.FSID, 's' * n)),
        st.integers(1, 10 ** 5).map(lambda n: ':' * n))


location_infos = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.binary(),
    st.text(), _weird, st.lists(st.text(), max_size=5),
    st.dictionaries(st.text(max_size=5), st.text(max_size=5), max_size=3),
    st.just(VALID).map(str.encode), _huge(),
    _joined(4), _joined(5), _joined(6), _plausible(), _plausible(),
    _valid_ish(), _valid_ish(), _valid_ish())

_anything = st.one_of(st.none(), st.booleans(), st.integers(), st.text(),
                      st.binary(), st.lists(st.text(), max_size=3),
                      st.dictionaries(st.text(max_size=5), st.integers(),
                                      max_size=3))
_protocols = st.one_of(st.sampled_from(['ceph', 'Ceph', 'CEPH', 'iSCSI', '',
                                        'ceph ', 'rbd']), _anything)
capabilities = st.one_of(
    _anything,
    st.fixed_dictionaries({}, optional={
        'storage_protocol': _protocols,
        'location_info': st.one_of(st.sampled_from(
            [VALID, OTHER_CLUSTER, SAME_POOL]), location_infos),
        'volume_backend_name': _anything}))
_ceph_capabilities = st.fixed_dictionaries(
    {'storage_protocol': st.sampled_from(['ceph', 'Ceph', 'CEPH']),
     'location_info': st.one_of(st.sampled_from(
         [VALID, OTHER_CLUSTER, SAME_POOL]), _valid_ish())},
    optional={'volume_backend_name': _anything, 'free_capacity_gb': _anything,
              'multiattach': _anything})
hosts = st.one_of(
    _anything,
    st.fixed_dictionaries({}, optional={'host': _anything,
                                        'capabilities': capabilities}),
    st.fixed_dictionaries({'capabilities': _ceph_capabilities},
                          optional={'host': _anything}))

# -- the property -------------------------------------------------------------


def _state(ceph):
    """Every image of every cluster: its size and non-zero blocks."""
    return {(conf, pool, name): (image.size, {
        i: b for i, b in image.blocks.items() if b.strip(b'\0')})
        for conf, cluster in ceph.clusters.items()
        for pool, images in cluster.pools.items()
        for name, image in images.items()}


def _migrate(host):
    """Run migrate_volume on a fresh pair of clusters; check the property.

    :returns: what rbdmig answered: 'refused', 'moved' or 'same pool'.
    """
    ceph = fx.make_ceph()
    src = fx.make_driver(ceph, pool='hdd')
    volume = fx.make_volume(ceph, data=DATA)
    before = _state(ceph)

    answer = src.migrate_volume(None, volume, host)

    assert type(answer) is tuple and answer in ((True, None), (False, None))
    assert ceph.connections == 0
    after = _state(ceph)
    if answer == (False, None):
        assert after == before
        return 'refused'
    # Moved: the destination must be exactly what location_info names,
    # read here without rbdmig's parser.
    fields = host['capabilities']['location_info'].split(':')
    assert len(fields) == 5
    fsid, pool = str(uuid.UUID(fields[2])), fields[4]
    source = (fx.CONF_A, 'hdd', volume.name)
    if after == before:
        assert (fsid, pool) == (fx.FSID, 'hdd')
        return 'same pool'
    [gone] = set(before) - set(after)
    [new] = set(after) - set(before)
    assert gone == source
    assert new[2] == volume.name
    assert after[new] == before[source]
    assert (ceph.clusters[new[0]].fsid, new[1]) == (fsid, pool)
    return 'moved'


@settings(max_examples=LOCATION_EXAMPLES)
@given(location_info=location_infos)
@example(location_info=VALID)
@example(location_info=OTHER_CLUSTER)
@example(location_info=SAME_POOL)
@example(location_info='ceph:%s:%s:None:ssd' % (fx.CONF_A, fx.FSID))
@example(location_info='None:None:None:None:None')
@example(location_info=VALID + '\x00')
@example(location_info=VALID.replace('ssd', 'ssd\x00hdd'))
@example(location_info=VALID.replace(fx.CONF_A, fx.CONF_A + '\x00x'))
@example(location_info=VALID.replace(fx.CONF_A, '\ud800'))
@example(location_info=VALID.replace(fx.FSID, fx.FSID.upper()))
@example(location_info=VALID.replace('admin', 'admin\nkey = x'))
def test_any_location_info_moves_correctly_or_refuses(location_info,
                                                      bad_input):
    answer = _migrate({'host': 'node@fast#ssd', 'capabilities': {
        'storage_protocol': 'ceph', 'location_info': location_info}})
    bad_input('location_info (generated)', answer)


@settings(max_examples=HOST_EXAMPLES)
@given(host=hosts)
@example(host=None)
@example(host=[])
@example(host='node@fast#ssd')
@example(host={'capabilities': ['ceph', VALID]})
@example(host={'capabilities': {'storage_protocol': b'ceph',
                                'location_info': VALID}})
@example(host={'capabilities': {'storage_protocol': ['ceph'],
                                'location_info': VALID}})
@example(host={'capabilities': {'storage_protocol': 'ceph',
                                'location_info': VALID}})
def test_any_host_moves_correctly_or_refuses(host, bad_input):
    bad_input('host dict (generated)', _migrate(host))
