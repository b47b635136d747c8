"""Option values from a config file: a driver loads, or says which is bad.

Through ``volume.load_driver``, as the CLI and the library load drivers,
from a real config file (oslo.config checks a file's value only when it
is read, so a bad one could surface mid-migration as oslo's own error).
"""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from oslo_config import cfg

from rbdmig import exception
from rbdmig import opts
from rbdmig import volume as volume_pkg
from rbdmig.volume.drivers import file as file_driver
from rbdmig.volume.drivers import rbd as rbd_driver
from tests.unit import rbd_fixtures as fx

# Generated (option, value) pairs per driver (doc/reliability.rst).
OPTION_EXAMPLES = 300

DRIVERS = {'rbd': 'rbdmig.volume.drivers.rbd.RBDDriver',
           'file': 'rbdmig.volume.drivers.file.FileDriver'}


def _bad_values(opt):
    """Values of ``opt``'s own kind that break its rules."""
    kind = opt.type
    values = []
    if isinstance(kind, cfg.types.Integer):
        values += ['abc', '1.5', '0x10', '1e3', '--1']
    if isinstance(kind, cfg.types.Float):
        values += ['abc', '0,5', 'nan%', '--1']
    if isinstance(kind, (cfg.types.Integer, cfg.types.Float)):
        if kind.min is not None:
            values.append(str(kind.min - 1))
        if kind.max is not None:
            values.append(str(kind.max + 1))
    if getattr(kind, 'choices', None):
        values += ['bogus', str(list(kind.choices)[0]).upper()]
    if getattr(kind, 'regex', None):
        values += ['999', '0o600', '60O']
    return values


def _cases(kind, driver_cls):
    cases = [(kind, opt.name, value)
             for opt in driver_cls.get_driver_options()
             for value in _bad_values(opt)]
    if kind == 'rbd':
        cases += [('rbd', 'rbd_store_chunk_size', v) for v in ('3', '64')]
        cases += [('rbd', name, 'x\x00y') for name in (
            'rbd_cluster_name', 'rbd_pool', 'rbd_user', 'rbd_ceph_conf',
            'rbd_keyring_conf')]
    return cases


BAD = (_cases('rbd', rbd_driver.RBDDriver) +
       _cases('file', file_driver.FileDriver) +
       [('file', 'file_volume_dir', '')])


@pytest.fixture
def loader(tmp_path, monkeypatch):
    """Return ``load(kind, {option: text})``: the driver, loaded."""
    ceph = fx.make_ceph()
    # load_driver builds the class itself: give it the fake bindings.
    monkeypatch.setattr(rbd_driver, 'rados', ceph.rados)
    monkeypatch.setattr(rbd_driver, 'rbd', ceph.rbd)
    counter = iter(range(10 ** 9))

    def load(kind, options):
        n = next(counter)
        path = tmp_path / ('rbdmig-%d.conf' % n)
        settings_ = {'volume_driver': DRIVERS[kind],
                     'rbd_ceph_conf': fx.CONF_A, 'rbd_pool': 'hdd',
                     'file_volume_dir': str(tmp_path / ('v%d' % n))}
        settings_.update(options)
        path.write_text('[DEFAULT]\nenabled_backends = b\n[b]\n' + ''.join(
            '%s = %s\n' % item for item in settings_.items()))
        conf = cfg.ConfigOpts()
        opts.register_opts(conf)
        conf(['--config-file', str(path)], project='rbdmig-test')
        return volume_pkg.load_driver('b', conf=conf)
    return load


def test_good_files_load(loader):
    assert loader('rbd', {}).configuration.rbd_pool == 'hdd'
    assert loader('file', {}).volume_dir


@pytest.mark.parametrize('kind,option,value', BAD,
                         ids=['%s-%s=%s' % c for c in BAD])
def test_a_bad_value_is_named_in_one_sentence(loader, kind, option, value,
                                              bad_input):
    with pytest.raises(exception.InvalidConfiguration) as caught:
        loader(kind, {option: value})
    text = str(caught.value)
    assert option in text
    assert '\n' not in text and text.endswith('.') and len(text) < 300
    assert 'LocationInfo' not in text  # oslo's noise is left out
    bad_input('option value, %s (chosen)' % kind, 'refused')


# Any one-line value, for any option the driver reads (but where the
# file backend keeps its volumes: a test must not write outside tmp).
_values = st.one_of(
    st.text(st.characters(exclude_characters='\r\n', exclude_categories=(
        'Cs',)), max_size=30),
    st.sampled_from(['', '$', '$foo', '${x}', '%(x)s', '-1', '0', '1',
                     '9' * 30, '1.0', 'None', 'true', '\x00', '  ']))


def _options(driver_cls):
    return st.sampled_from(sorted(
        opt.name for opt in driver_cls.get_driver_options()
        if opt.name != 'file_volume_dir'))


@settings(max_examples=OPTION_EXAMPLES)
@given(option=_options(rbd_driver.RBDDriver), value=_values)
def test_rbd_loads_or_says_what_is_wrong(loader, option, value, bad_input):
    bad_input('option value, rbd (generated)',
              _load_or_refuse(loader, 'rbd', option, value))


@settings(max_examples=OPTION_EXAMPLES)
@given(option=_options(file_driver.FileDriver), value=_values)
def test_file_loads_or_says_what_is_wrong(loader, option, value,
                                          bad_input):
    bad_input('option value, file (generated)',
              _load_or_refuse(loader, 'file', option, value))


def _load_or_refuse(loader, kind, option, value):
    try:
        loader(kind, {option: value})
    except exception.RbdmigError as err:
        assert '\n' not in str(err)
        return 'refused'
    return 'loaded'


def test_the_cases_cover_every_rule():
    # Every integer option with bounds, every choice and regex is tried.
    names = {option for _, option, _ in BAD}
    assert {'rbd_migration_chunk_size', 'rbd_migration_method',
            'rbd_migration_queue_depth', 'file_volume_mode',
            'rbd_store_chunk_size', 'reserved_percentage',
            'volume_copy_queue_depth'} <= names
