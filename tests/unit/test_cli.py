"""The CLI's parsing and exit codes, on two real file backends."""

import json

import pytest

from rbdmig import exception
from rbdmig.cmd import main as cli


@pytest.fixture
def conf(tmp_path):
    path = tmp_path / 'rbdmig.conf'
    path.write_text(
        '[DEFAULT]\nenabled_backends = near, far\nstate_path = %s\n'
        '[near]\nvolume_driver = rbdmig.volume.drivers.file.FileDriver\n'
        'file_volume_dir = %s\n'
        '[far]\nvolume_driver = rbdmig.volume.drivers.file.FileDriver\n'
        'file_volume_dir = %s\n' % (tmp_path / 'state', tmp_path / 'near',
                                     tmp_path / 'far'))
    return str(path)


def _run(capsys, conf, *args):
    code = cli.main(['--config-file', conf] + list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_create_show_migrate_list_delete(capsys, conf, tmp_path):
    code, out, _ = _run(capsys, conf, 'create', '--backend', 'near',
                        '--size', '1', '--name', 'data')
    volume = out.strip()
    assert code == 0 and len(volume) == 36
    assert (tmp_path / 'near' / ('volume-' + volume)).exists()

    code, out, _ = _run(capsys, conf, 'show', volume, '--format', 'json')
    shown = json.loads(out)
    assert code == 0
    assert {k: shown[k] for k in ('id', 'status', 'migration_status',
                                  'backend', 'size', 'progress')} == {
        'id': volume, 'status': 'available', 'migration_status': None,
        'backend': 'near', 'size': 1, 'progress': None}

    code, out, _ = _run(capsys, conf, 'migrate', volume, 'far', '--wait')
    assert code == 0
    assert out.startswith('accepted: migration 1 moves %s from near to '
                          'far.' % volume)
    assert out.strip().endswith('%s: success on far' % volume)
    assert (tmp_path / 'far' / ('volume-' + volume)).exists()
    assert not (tmp_path / 'near' / ('volume-' + volume)).exists()
    code, out, _ = _run(capsys, conf, 'show', volume, '--format', 'json')
    assert json.loads(out)['progress']['percent'] == 100.0

    code, out, _ = _run(capsys, conf, 'list', '--backend', 'far')
    assert code == 0 and volume in out
    code, out, _ = _run(capsys, conf, 'list', '--migration-status', 'none')
    assert volume not in out

    assert _run(capsys, conf, 'delete', volume)[0] == 0
    assert not (tmp_path / 'far' / ('volume-' + volume)).exists()


@pytest.mark.parametrize('args,says', [
    (['migrate', '00000000-0000-0000-0000-000000000000', 'far'],
     'no such volume.'),
    (['show', 'nope'], 'could not be found'),
    (['create', '--backend', 'nowhere', '--size', '1'], 'not configured'),
    (['create', '--backend', 'near', '--size', '0'], 'size'),
    (['create', '--backend', 'near', '--size', '1', '--spec', 'nokey'],
     'NAME=VALUE'),
])
def test_refusals_exit_3_with_one_sentence(capsys, conf, args, says):
    code, out, err = _run(capsys, conf, *args)
    assert code == 3 and out == ''
    assert err.startswith('rbdmig: refused: ') and says in err
    assert len(err.strip().splitlines()) == 1


def test_a_move_onto_its_own_backend_is_refused(capsys, conf):
    volume = _run(capsys, conf, 'create', '--backend', 'near', '--size',
                  '1')[1].strip()
    code, out, err = _run(capsys, conf, 'migrate', volume, 'near')
    assert code == 3 and err.strip().endswith('it is on near already.')
    assert json.loads(_run(capsys, conf, 'show', volume, '--format',
                           'json')[1])['progress'] is None


@pytest.mark.parametrize('args', [[], ['migrate'], ['drain', 'a', 'b',
                                                    '--parallel', '17'],
                                  ['create', '--size', 'x']])
def test_bad_usage_exits_2(capsys, conf, args):
    with pytest.raises(SystemExit) as done:
        cli.main(['--config-file', conf] + args)
    assert done.value.code == 2


def test_drain_above_six_needs_offload(capsys, conf):
    code, out, err = _run(capsys, conf, 'drain', 'near', 'far',
                          '--parallel', '7')
    assert code == 3 and out == ''
    assert ('--parallel 7: near moves at most 6 volumes at once: its '
            'method is the generic copy, whose data crosses this host; '
            'only offload' in err)
    code, out, _ = _run(capsys, conf, 'drain', 'near', 'far',
                        '--parallel', '6')
    assert code == 0 and 'every volume moved' in out


@pytest.mark.parametrize('stats,limit,default', [
    ({'rbd_migration_method': 'offload', 'offload_available': True}, 16, 8),
    ({'rbd_migration_method': 'offload', 'offload_available': False}, 6, 2),
    ({'rbd_migration_method': 'extents', 'offload_available': True}, 6, 2),
    ({}, 6, 2)])
def test_drain_limit_is_offloads_only_when_it_runs(stats, limit, default):
    from rbdmig.cmd import migrations

    assert migrations.drain_limit(stats) == limit
    assert migrations.drain_default(stats) == default
    migrations.check_parallel(limit, 'src', stats)
    with pytest.raises(exception.InvalidInput) as err:
        migrations.check_parallel(limit + 1, 'src', stats)
    assert 'src moves at most %d volumes at once' % limit in str(err.value)


def test_import_adopts_files(capsys, conf, tmp_path):
    (tmp_path / 'near').mkdir()
    (tmp_path / 'near' / 'old-disk').write_bytes(b'\0' * 10)
    code, out, _ = _run(capsys, conf, 'import', 'near')
    assert code == 0 and out.strip().endswith('1 image(s) adopted from near')


def test_config_file_after_the_command_and_a_log_file(capsys, conf,
                                                      tmp_path):
    log = tmp_path / 'rbdmig.log'
    with open(conf, 'a') as f:
        f.write('[DEFAULT]\nlog_file = %s\n' % log)
    code = cli.main(['create', '--backend', 'near', '--size', '1',
                     '--config-file', conf])
    out, err = capsys.readouterr()
    assert code == 0 and len(out.strip()) == 36 and err == ''
    assert 'Recorded volume' not in log.read_text()  # DEBUG stays out
    assert cli.main(['--config-file', conf, 'show', out.strip()]) == 0
