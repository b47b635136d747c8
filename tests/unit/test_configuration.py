"""Configuration groups and load_driver behave as cinder's do."""

import pytest
from oslo_config import cfg

from rbdmig import exception
from rbdmig import opts
from rbdmig import volume
from rbdmig.volume import configuration
from rbdmig.volume import driver

CONF_TEXT = """
[DEFAULT]
enabled_backends = alpha, beta

[backend_defaults]
reserved_percentage = 5

[alpha]
volume_driver = rbdmig.volume.driver.VolumeDriver
volume_backend_name = Alpha
reserved_percentage = 10

[beta]
volume_driver = rbdmig.volume.driver.VolumeDriver
"""


@pytest.fixture
def conf(tmp_path):
    path = tmp_path / 'rbdmig.conf'
    path.write_text(CONF_TEXT)
    conf = cfg.ConfigOpts()
    opts.register_opts(conf)
    conf(['--config-file', str(path)], project='rbdmig-test')
    return conf


def test_group_value_then_shared_default_then_option_default(conf):
    alpha = configuration.Configuration(driver.volume_opts, 'alpha', conf)
    beta = configuration.Configuration(driver.volume_opts, 'beta', conf)
    assert alpha.reserved_percentage == 10
    assert beta.reserved_percentage == 5
    assert alpha.volume_backend_name == 'Alpha'
    assert beta.volume_copy_bps_limit == 0
    assert alpha.safe_get('no_such_option') is None
    with pytest.raises(cfg.NoSuchOptError):
        alpha.no_such_option


def test_append_config_values_registers_more(conf):
    alpha = configuration.Configuration([], 'alpha', conf)
    assert alpha.safe_get('reserved_percentage') is None
    alpha.append_config_values(driver.volume_opts)
    alpha.append_config_values(driver.volume_opts)  # twice is harmless
    assert alpha.reserved_percentage == 10


def test_default_group(conf):
    default = configuration.Configuration(driver.volume_opts, conf=conf)
    assert default.reserved_percentage == 0


def test_load_driver_builds_like_cinder_volume(conf):
    drv = volume.load_driver('alpha', conf=conf, host='node@alpha')
    assert type(drv) is driver.VolumeDriver
    assert drv.host == 'node@alpha'
    assert drv.configuration.reserved_percentage == 10
    stats = drv.get_volume_stats(refresh=True)
    assert stats['volume_backend_name'] == 'Alpha'
    assert drv.update_provider_info([], []) == (None, None)
    assert drv.migrate_volume(None, object(), {}) == (False, None)


def test_load_enabled_drivers(conf):
    drivers = volume.load_enabled_drivers(conf=conf)
    assert sorted(drivers) == ['alpha', 'beta']
    assert drivers['beta'].get_volume_stats()['reserved_percentage'] == 5


def test_load_driver_errors_are_one_sentence(conf):
    configuration.Configuration(volume.backend_opts, 'beta', conf)
    conf.set_override('volume_driver', 'no.such.Driver', group='beta')
    with pytest.raises(exception.InvalidConfiguration,
                       match="volume_driver 'no.such.Driver' of \\[beta\\]"):
        volume.load_driver('beta', conf=conf)
    with pytest.raises(exception.InvalidConfiguration,
                       match='section \\[gamma\\] sets no volume_driver'):
        volume.load_driver('gamma', conf=conf)


def test_list_opts_names_every_backend_option():
    groups = dict(opts.list_opts())
    names = {o.name for o in groups['backend_defaults']}
    assert {'volume_driver', 'rbd_pool', 'file_volume_dir',
            'rbd_migration_method', 'volume_copy_bps_limit'} <= names
    assert 'enabled_backends' in {o.name for o in groups['DEFAULT']}
