"""Volume names: each driver takes a name whole, or refuses it clearly.

A name a driver takes must name exactly that volume (never a shortened
one, never a file outside the backend's directory); a name it cannot
take is refused with one sentence, before the backend is touched.
"""

import os

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from rbdmig import exception
from rbdmig import objects
from tests.unit import rbd_fixtures as fx
from tests.unit import test_file_driver as files

# Generated names per driver (doc/reliability.rst).
NAME_EXAMPLES = 500

LONG = 'x' * 1000
# name -> (file backend takes it, RBD takes it)
NAMES = {
    '': (False, False), '.': (False, True), '..': (False, True),
    '../escape': (False, False), 'a/b': (False, False),
    '/etc/passwd': (False, False), 'a\x00b': (False, False),
    'a\nb': (False, False), '\x7f': (False, False), '\x1b[2J': (False, False),
    '\ud800': (False, False), 'x\udc80': (False, False),
    '.hidden': (False, True), 'a@snap': (True, False),
    'ünïcødé': (True, True), '\u202eevil': (True, True), ' ': (True, True),
    'a:b': (True, True), 'a;rm -rf /': (False, False), '$(id)': (True, True),
    'x' * 255: (True, True), 'x' * 256: (False, True), LONG: (False, True),
    'é' * 1020: (False, True), 'x' * 2041: (False, True),
    'x' * 2042: (False, False), 'é' * 1021: (False, False),
    None: (False, False), 42: (False, False), b'bytes': (False, False),
}


def one_sentence(err):
    """An rbdmig error that reads as one short sentence."""
    text = str(err)
    assert isinstance(err, exception.RbdmigError)
    assert '\n' not in text and text.endswith('.') and len(text) < 300
    return text


def _volume(name):
    volume = objects.Volume(size=1)
    volume.name = name  # as a Cinder record could have it, unchecked
    return volume


@pytest.fixture
def file_driver(tmp_path):
    drv = files.make_driver(tmp_path, file_volume_dir=str(
        tmp_path / 'backend' / 'volumes'))
    drv.do_setup(None)
    return drv


def _tree(root):
    return sorted(os.path.relpath(os.path.join(d, f), root)
                  for d, _, names in os.walk(root) for f in names)


def _file_create(drv, tmp_path, name):
    """Create and delete a volume named ``name``: 'taken' or 'refused'."""
    volume = _volume(name)
    try:
        drv.create_volume(volume)
    except exception.InvalidVolume as err:
        one_sentence(err)
        assert _tree(tmp_path) == []
        return 'refused'
    # Exactly one file, named exactly so, directly in the directory.
    assert _tree(tmp_path) == [os.path.join('backend', 'volumes', name)]
    drv.delete_volume(volume)
    assert _tree(tmp_path) == []
    return 'taken'


def _rbd_create(name):
    """The same on the fake Ceph, whose names behave as librbd's do."""
    ceph = fx.make_ceph()
    drv = fx.make_driver(ceph)
    volume = _volume(name)
    images = ceph.clusters[fx.CONF_A].pools['hdd']
    try:
        drv.create_volume(volume)
    except exception.InvalidVolume as err:
        one_sentence(err)
        for call in (drv.delete_volume, drv.volume_in_use,
                     lambda v: drv.open_volume(None, v, 'rb'),
                     lambda v: drv.initialize_connection(v, {}),
                     lambda v: drv.extend_volume(v, 2)):
            with pytest.raises(exception.InvalidVolume):
                call(volume)
        assert drv.migrate_volume(None, volume, fx.host_of(
            fx.make_driver(ceph, pool='ssd', backend='fast'))) == (
            False, None)
        assert images == {} and ceph.connections == 0
        return 'refused'
    assert list(images) == [name]  # whole, not cut at a NUL
    with drv.open_volume(None, volume, 'r+b') as handle:
        handle.write(b'data')
    drv.delete_volume(volume)
    assert images == {} and ceph.connections == 0
    return 'taken'


@pytest.mark.parametrize('name', list(NAMES), ids=lambda n: repr(n)[:20])
def test_file_backend_names(file_driver, tmp_path, name, bad_input):
    answer = _file_create(file_driver, tmp_path, name)
    assert answer == ('taken' if NAMES[name][0] else 'refused')
    bad_input('volume name, file (chosen)', answer)


@pytest.mark.parametrize('name', list(NAMES), ids=lambda n: repr(n)[:20])
def test_rbd_names(name, bad_input):
    answer = _rbd_create(name)
    assert answer == ('taken' if NAMES[name][1] else 'refused')
    bad_input('volume name, rbd (chosen)', answer)


def test_a_name_cut_short_never_deletes_another_image():
    ceph = fx.make_ceph()
    drv = fx.make_driver(ceph)
    drv.create_volume(_volume('vol'))
    with pytest.raises(exception.InvalidVolume, match='control character'):
        drv.delete_volume(_volume('vol\x00other'))
    assert list(ceph.clusters[fx.CONF_A].pools['hdd']) == ['vol']


# Any text, with path pieces, control characters and lone surrogates.
_pieces = st.sampled_from(['/', '..', '.', '\x00', '\n', '@', ':', '\\',
                           '~', '%2e%2e%2f', '\u202e', '\ud800', '\udcff'])
names = st.one_of(
    st.text(st.one_of(st.characters(),
                      st.characters(categories=['Cc', 'Cs'])),
            max_size=40),
    st.lists(st.one_of(_pieces, st.text(max_size=5)),
             max_size=8).map(''.join),
    st.integers(200, 3000).map(lambda n: 'v' * n),
    st.integers(100, 1100).map(lambda n: '\u00e9' * n))


@settings(max_examples=NAME_EXAMPLES)
@given(name=names)
@example(name='../../etc/cron.d/x')
@example(name='..\\..\\x')
def test_file_backend_never_leaves_its_directory(tmp_path_factory, name,
                                                  bad_input):
    tmp_path = tmp_path_factory.mktemp('names')
    drv = files.make_driver(tmp_path, file_volume_dir=str(
        tmp_path / 'backend' / 'volumes'))
    drv.do_setup(None)
    bad_input('volume name, file (generated)',
              _file_create(drv, tmp_path, name))


@settings(max_examples=NAME_EXAMPLES)
@given(name=names)
def test_rbd_takes_a_name_whole_or_refuses_it(name, bad_input):
    bad_input('volume name, rbd (generated)', _rbd_create(name))
