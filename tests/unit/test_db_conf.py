"""[DEFAULT] state_path and [database] connection: the embedded default."""

from oslo_config import cfg
from oslo_db import options as db_options

from rbdmig import opts


def _conf(argv=()):
    conf = cfg.ConfigOpts()
    opts.register_opts(conf)
    conf(list(argv), project='rbdmig-test', default_config_files=[])
    return conf


def test_default_connection_is_a_sqlite_file_under_state_path():
    conf = _conf()
    assert conf.state_path == '/var/lib/rbdmig'
    assert conf.database.connection == (
        'sqlite:////var/lib/rbdmig/rbdmig.sqlite')


def test_connection_follows_state_path(tmp_path):
    path = tmp_path / 'rbdmig.conf'
    path.write_text('[DEFAULT]\nstate_path = %s\n' % tmp_path)
    conf = _conf(['--config-file', str(path)])
    assert conf.database.connection == 'sqlite:///%s/rbdmig.sqlite' % (
        tmp_path)


def test_any_sqlalchemy_url_can_be_configured(tmp_path):
    path = tmp_path / 'rbdmig.conf'
    path.write_text('[database]\nconnection = '
                    'postgresql://rbdmig:pw@db.example/rbdmig\n')
    conf = _conf(['--config-file', str(path)])
    assert conf.database.connection.startswith('postgresql://')


def test_registering_twice_is_harmless():
    conf = cfg.ConfigOpts()
    opts.register_opts(conf)
    opts.register_opts(conf)
    conf([], project='rbdmig-test', default_config_files=[])
    assert conf.database.connection.endswith('/rbdmig.sqlite')


def test_generator_hook_sets_the_same_default():
    connection = next(o for o in db_options.database_opts
                      if o.name == 'connection')
    saved = connection.default
    try:
        opts.update_default_opts()
        assert connection.default == opts.DEFAULT_CONNECTION
    finally:
        connection.default = saved
