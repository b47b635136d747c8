"""location_info formatting and parsing."""

import pytest

from rbdmig import exception
from rbdmig.ceph import location as rbd_location

FSID = '11111111-2222-3333-4444-555555555555'


def test_round_trip():
    text = rbd_location.format_location('ceph', '/etc/ceph/ceph.conf', FSID,
                                        'cinder', 'volumes')
    assert text == 'ceph:/etc/ceph/ceph.conf:%s:cinder:volumes' % FSID
    info = rbd_location.parse_location(text)
    assert info == ('ceph', '/etc/ceph/ceph.conf', FSID, 'cinder',
                    'volumes')


def test_unset_values_round_trip_as_none():
    text = rbd_location.format_location('ceph', None, FSID, None, 'rbd')
    assert text == 'ceph::%s::rbd' % FSID
    info = rbd_location.parse_location(text)
    assert (info.ceph_conf, info.user) == (None, None)


def test_cinder_none_text_means_unset():
    # cinder's own driver formats an unset rbd_user as 'None'
    info = rbd_location.parse_location('ceph::%s:None:volumes' % FSID)
    assert info.user is None


@pytest.mark.parametrize('text,why', [
    (None, 'no location_info'),
    ('', 'no location_info'),
    ('ceph:/c:%s:u' % FSID, '4 fields'),
    ('ceph:/etc/ce:ph.conf:%s:u:pool' % FSID, '6 fields'),
    ('ceph:/c:%s:u:po:ol' % FSID, '6 fields'),
    ('ceph:/c:nope:u:pool', 'fsid'),
    ('ceph:/c:%s:u:' % FSID, 'names no pool'),
])
def test_malformed_is_refused_with_a_reason(text, why):
    with pytest.raises(exception.InvalidInput, match=why):
        rbd_location.parse_location(text)
