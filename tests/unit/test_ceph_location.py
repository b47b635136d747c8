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


def test_fsid_comes_back_in_canonical_form():
    for fsid in (FSID.upper(), '{%s}' % FSID, FSID.replace('-', '')):
        info = rbd_location.parse_location('ceph::%s::rbd' % fsid)
        assert info.fsid == FSID


@pytest.mark.parametrize('host,why', [
    (None, 'a NoneType, not a dict'),
    ('node@be#pool', 'a str, not a dict'),
    ({'capabilities': ['ceph']}, 'capabilities are a list'),
    ({'capabilities': {'storage_protocol': b'ceph'}}, 'not a Ceph backend'),
    ({'capabilities': {'storage_protocol': 'x' * 10 ** 6}}, 'not a Ceph'),
    ({'capabilities': {'storage_protocol': 'CEPH'}}, 'no location_info'),
])
def test_unusable_hosts_are_refused_briefly(host, why):
    with pytest.raises(exception.InvalidInput, match=why) as caught:
        rbd_location.from_host(host)
    assert len(str(caught.value)) < 200


@pytest.mark.parametrize('text,why', [
    (None, 'no location_info'),
    ('', 'no location_info'),
    (b'ceph::%s::rbd' % FSID.encode(), 'a bytes'),
    ('ceph::%s::rbd\x00evil' % FSID, 'pool field .* control character'),
    ('ceph:/a.conf\x00:%s::rbd' % FSID, 'ceph_conf field .* control'),
    ('ceph::%s:admin\n:rbd' % FSID, 'user field .* control'),
    ('ceph:\ud800:%s::rbd' % FSID, 'ceph_conf field .* surrogate'),
    ('ceph:%s:%s::rbd' % ('/c' * 5000, FSID), 'longer than any'),
    ('ceph:/c:%s:u' % FSID, '4 fields'),
    ('ceph:/etc/ce:ph.conf:%s:u:pool' % FSID, '6 fields'),
    ('ceph:/c:%s:u:po:ol' % FSID, '6 fields'),
    ('ceph:/c:nope:u:pool', 'fsid'),
    ('ceph:/c:%s:u:' % FSID, 'names no pool'),
])
def test_malformed_is_refused_with_a_reason(text, why):
    with pytest.raises(exception.InvalidInput, match=why) as caught:
        rbd_location.parse_location(text)
    # The text is not this backend's: it is described, never repeated.
    if text:
        assert str(text) not in str(caught.value)
        assert '/c/c' not in str(caught.value)
