"""Secrets stay secret: never in logs, errors or output; no shell, ever."""

import ast
import io
import logging
import os
import pathlib
import stat

import pytest

from rbdmig import exception
from rbdmig import redact
from rbdmig.cmd import main as cli
from rbdmig.migration import manager
from rbdmig.sandbox import cluster as sandbox_cluster
from rbdmig.sandbox import templates
from tests.unit import rbd_fixtures as fx
from tests.unit import test_file_driver as files

ROOT = pathlib.Path(__file__).resolve().parents[2]
# A cephx key, as ceph-authtool makes them, planted where it could leak.
KEY = 'AQBOSkZpAAAAABAAxX5iVRxC1tOs6xjWpb+JRQ=='
PASSWORD = 'Tr0ub4dor&3-planted'

# -- no shell -----------------------------------------------------------------

_SHELL_CALLS = {('os', 'system'), ('os', 'popen'), ('os', 'spawnlp'),
                ('subprocess', 'getoutput'),
                ('subprocess', 'getstatusoutput'),
                ('asyncio', 'create_subprocess_shell'), ('pty', 'spawn')}
_SUBPROCESS = {'run', 'Popen', 'call', 'check_call', 'check_output'}


def shell_uses(source, filename='<string>'):
    """Return ``[(line, why)]`` for every way ``source`` reaches a shell."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        name = (func.value.id, func.attr) if (
            isinstance(func, ast.Attribute) and
            isinstance(func.value, ast.Name)) else None
        if name in _SHELL_CALLS:
            found.append((node.lineno, '%s.%s' % name))
        for kw in node.keywords:
            if kw.arg == 'shell' and not (
                    isinstance(kw.value, ast.Constant) and
                    kw.value.value is False):
                found.append((node.lineno, 'shell=%s' % ast.unparse(
                    kw.value)))
        if name and name[0] == 'subprocess' and name[1] in _SUBPROCESS \
                and node.args and _is_text(node.args[0]):
            # A command line as one string: made to be split by a shell.
            found.append((node.lineno, 'command as a string'))
    return found


def _is_text(node):
    """Whether an expression builds a string (literal, f-string, %, +)."""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str)
    if isinstance(node, ast.JoinedStr):
        return True
    if isinstance(node, ast.BinOp):
        return _is_text(node.left) or _is_text(node.right)
    return (isinstance(node, ast.Call) and
            isinstance(node.func, ast.Attribute) and
            node.func.attr in ('format', 'join') and
            _is_text(node.func.value))


def _python_files():
    for top in ('rbdmig', 'tools'):
        yield from sorted((ROOT / top).rglob('*.py'))


def test_no_shell_anywhere_in_rbdmig():
    scanned = list(_python_files())
    found = {str(path.relative_to(ROOT)): uses for path in scanned
             if (uses := shell_uses(path.read_text(), str(path)))}
    assert found == {}
    assert len(scanned) > 40  # rbdmig/ and tools/ were found


@pytest.mark.parametrize('source', [
    'import subprocess\nsubprocess.run("ls " + name, shell=True)',
    'import subprocess\nsubprocess.Popen(cmd, shell=flag)',
    'import os\nos.system("rbd rm " + name)',
    'import os\nos.popen(cmd)',
    'import subprocess\nsubprocess.check_output(f"rbd ls {pool}")',
    'import subprocess\nsubprocess.getoutput(cmd)',
    'import subprocess\nsubprocess.run("rbd rm %s" % name)',
    'import subprocess\nsubprocess.run(" ".join(argv))',
])
def test_the_scan_sees_a_shell(source):
    assert shell_uses(source)


def test_the_scan_leaves_argument_lists_alone():
    assert shell_uses('import subprocess\n'
                      'subprocess.run(["rbd", "ls", pool], shell=False)\n'
                      'subprocess.run(("ceph", "-s"))\n'
                      'subprocess.run(("rbd", "--conf", c) + args)\n'
                      'subprocess.run(cmd)') == []


# -- masking ------------------------------------------------------------------

@pytest.mark.parametrize('text', [
    '[client.x]\n\tkey = %s\n' % KEY,
    'ceph-osd -i 0 --mkfs --key %s --osd-uuid 1' % KEY,
    'ceph-osd --key=%s' % KEY,
    'found %s in the log' % KEY,
    '{"cephx_secret": "%s"}' % KEY,
    'mysql+pymysql://rbdmig:%s@db/rbdmig' % PASSWORD,
    'password=%s' % PASSWORD,
    "{'password': '%s'}" % PASSWORD,
])
def test_secrets_are_masked(text):
    masked = redact.mask(text)
    assert KEY not in masked and PASSWORD not in masked
    assert '***' in masked


def test_plain_text_is_left_alone():
    text = 'keyring /etc/ceph/ceph.client.x.keyring; monkey = banana'
    assert redact.mask(text) == text


@pytest.mark.parametrize('error', [
    exception.SandboxError(reason='ceph-osd --mkfs --key %s failed' % KEY),
    exception.InvalidConfiguration(reason='connection = mysql://u:%s@h'
                                          % PASSWORD),
    exception.ClusterUnreachable(cluster='x', seconds=1.0,
                                 reason='key = %s' % KEY),
    exception.RbdmigError('a message with %s in it' % KEY),
])
def test_errors_mask_what_they_carry(error):
    for shown in (str(error), repr(error), error.msg, str(error.args)):
        assert KEY not in shown and PASSWORD not in shown


# -- the CLI ------------------------------------------------------------------

@pytest.mark.parametrize('debug', [[], ['--debug']], ids=['quiet', 'debug'])
def test_cli_output_never_shows_a_secret(monkeypatch, capsys, caplog,
                                         tmp_path, debug):
    class Failing:
        def __init__(self, *args, **kwargs):
            pass

        def start(self):
            raise exception.SandboxError(
                reason='ceph-osd --conf c --mkfs --key %s failed: '
                       'password=%s' % (KEY, PASSWORD))

    monkeypatch.setattr('rbdmig.sandbox.Cluster', Failing)
    with caplog.at_level(logging.DEBUG):
        status = cli.main(debug + ['sandbox-start', str(tmp_path / 's')])
    out, err = capsys.readouterr()
    assert status == 1 and 'rbdmig: error' in err
    for shown in (out, err, caplog.text):
        assert KEY not in shown and PASSWORD not in shown


# -- the sandbox --------------------------------------------------------------

def test_osd_keys_never_go_on_a_command_line(tmp_path, monkeypatch):
    # A command line is in /proc/<pid>/cmdline, for every user to read.
    cluster = sandbox_cluster.Cluster(tmp_path / 'c')
    os.makedirs(cluster.base_dir)
    runs = []
    monkeypatch.setattr(templates, 'new_key', lambda: KEY)
    monkeypatch.setattr(cluster, '_command',
                        lambda *a, **k: {'osdid': 0})
    monkeypatch.setattr(cluster, '_spawn', lambda *a: None)
    monkeypatch.setattr(cluster, '_run',
                        lambda *cmd, **kw: runs.append((cmd, kw)))

    cluster._create_osd(client=None)

    [(argv, kwargs)] = runs
    assert KEY not in ' '.join(argv)
    assert kwargs['input'] == KEY  # on stdin, as ceph-volume does
    keyring = pathlib.Path(cluster.base_dir, 'osd.0', 'keyring')
    assert stat.S_IMODE(keyring.stat().st_mode) == 0o600


def test_sandbox_directory_is_ours_alone(tmp_path):
    # The mon's store, readable by all (0644), holds every cephx key.
    given = tmp_path / 'given'
    given.mkdir(mode=0o755)
    for base in (tmp_path / 'new' / 'dir', given):
        cluster = sandbox_cluster.Cluster(base)
        cluster._make_base_dir()
        assert stat.S_IMODE(os.stat(base).st_mode) == 0o700


def test_keyrings_are_0600_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        templates.write_keyring(str(tmp_path / 'k'), {'client.x': (KEY, {})})
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / 'k').st_mode) == 0o600


# -- everything a migration produces ------------------------------------------

def _shown(caplog, *more):
    """Every text a run produced: log records (formatted, tracebacks
    included) and whatever else is given (errors, return values)."""
    formatter = logging.Formatter('%(message)s')
    texts = [caplog.text]
    for record in caplog.records:
        texts.append(formatter.format(record))
        texts.append(repr(record.args))
    texts += [str(m) for m in more] + [repr(m) for m in more]
    return '\n'.join(texts)


def test_a_planted_key_never_shows(tmp_path, caplog):
    keyring = tmp_path / 'ceph.client.cinder.keyring'
    keyring.write_text('[client.cinder]\n\tkey = %s\n' % KEY)
    os.chmod(keyring, 0o600)
    ceph = fx.make_ceph()
    options = dict(rbd_user='cinder', rbd_keyring_conf=str(keyring))
    src = fx.make_driver(ceph, pool='hdd', **options)
    dst = fx.make_driver(ceph, pool='ssd', backend='fast', **options)
    file_backend = files.make_driver(tmp_path)
    file_backend.do_setup(None)
    produced = []
    # A location_info that names a key and a password: refused, quietly.
    leaky = {'host': 'x', 'capabilities': {
        'storage_protocol': 'ceph',
        'location_info': 'ceph:/etc/%s.conf:%s:password=%s:ssd' % (
            KEY, fx.FSID, PASSWORD)}}

    with caplog.at_level(logging.DEBUG):
        volume = fx.make_volume(ceph, data=b'data', size_mib=1024)
        produced.append(src.get_volume_stats(refresh=True))
        produced.append(src.initialize_connection(volume, {}))
        produced.append(src.migrate_volume(None, volume, leaky))
        produced.append(manager.migrate(None, volume, src, dst))
        produced.append(manager.migrate(None, volume, dst, file_backend))
        # librados' own error, logged as the reason stats are missing.
        ceph.fail('mon_command', ceph.rados.Error('df: key = %s' % KEY))
        produced.append(dst.get_volume_stats(refresh=True))
        ceph.fail('connect', ceph.rados.PermissionDeniedError(
            'auth failed for key = %s' % KEY))
        try:
            dst.create_volume(volume)
        except exception.RbdmigError as err:
            produced.append(err)
    shown = _shown(caplog, *produced)
    assert isinstance(produced[-1], exception.ClusterUnreachable)
    assert produced[2] == (False, None)
    assert 'keyring' in shown or 'cinder' in shown  # the run said things
    assert KEY not in shown and PASSWORD not in shown
    assert len(caplog.records) > 10


def test_caplog_would_see_a_leak(caplog):
    # The search above can fail: a key logged raw is found.
    with caplog.at_level(logging.DEBUG):
        logging.getLogger('rbdmig.test').debug('key %s', KEY)
    assert KEY in _shown(caplog)
    assert KEY in _shown(caplog, io.StringIO(KEY).getvalue())
