"""Real cephx keys never show, and the sandbox keeps them private."""

import logging
import os
import re
import stat
import uuid

import pytest

from rbdmig import exception
from rbdmig.cmd import main as cli
from rbdmig.migration import manager
from rbdmig.sandbox import templates
from tests.functional import helpers

KEY = re.compile(r'AQ[A-Za-z0-9+/]{36,38}==')


def _shown(caplog, produced):
    formatter = logging.Formatter('%(message)s')
    return '\n'.join([caplog.text] +
                     [formatter.format(r) for r in caplog.records] +
                     [str(p) for p in produced] + [repr(p) for p in produced])


def test_a_real_key_never_shows(ceph_cluster, tmp_path, caplog):
    user = 'rbdmig-secret-' + uuid.uuid4().hex[:8]
    keyring = ceph_cluster.add_client(user)
    [key] = KEY.findall(open(keyring).read())
    # Another key for the same user: refused by the cluster.
    wrong = str(tmp_path / 'wrong.keyring')
    wrong_key = templates.new_key()
    templates.write_keyring(wrong, {'client.' + user: (wrong_key, {})})
    own = {'rbd_user': user, 'rbd_keyring_conf': keyring}
    produced = []

    with caplog.at_level(logging.DEBUG):
        drivers = helpers.load_drivers(ceph_cluster, **{
            'ceph-a': own, 'ceph-b': own})
        volume, before = helpers.new_volume(drivers['ceph-a'], extents=4)
        produced.append(drivers['ceph-a'].get_volume_stats(refresh=True))
        produced.append(drivers['ceph-a'].initialize_connection(volume, {}))
        for src, dst in (('ceph-a', 'ceph-b'), ('ceph-b', 'files'),
                         ('files', 'ceph-a')):
            produced.append(manager.migrate(None, volume, drivers[src],
                                            drivers[dst]))
        assert helpers.digest(drivers['ceph-a'], volume) == before
        drivers['ceph-a'].delete_volume(volume)

        refused = helpers.load_drivers(ceph_cluster, **{
            'ceph-a': {'rbd_user': user, 'rbd_keyring_conf': wrong}})
        produced.append(refused['ceph-a'].get_volume_stats(refresh=True))
        with pytest.raises(exception.ClusterUnreachable) as caught:
            refused['ceph-a'].create_volume(volume)
        produced.append(caught.value)

    shown = _shown(caplog, produced)
    assert user in shown  # the run did talk about this user
    assert key not in shown and wrong_key not in shown
    assert 'keyring' not in str(produced[1])  # OSSN-0085


def _key_files(base):
    for root, _, names in os.walk(base):
        for name in names:
            path = os.path.join(root, name)
            if not stat.S_ISREG(os.lstat(path).st_mode):
                continue  # the daemons' sockets
            with open(path, 'rb') as f:
                if KEY.search(f.read().decode('latin-1')):
                    yield path


def test_cli_sandbox_keeps_its_keys_to_itself(tmp_path, capsys):
    base = str(tmp_path / 'made-by-rbdmig')
    try:
        assert cli.main(['--debug', 'sandbox-start', '--osd-gib', '3',
                         base]) == 0
        with open(os.path.join(base, 'ceph.conf')) as conf:
            assert 'memstore device bytes = %d' % (3 << 30) in conf.read()
        keys = set()
        loose = []
        for path in _key_files(base):
            keys.update(KEY.findall(open(path, encoding='latin-1').read()))
            if stat.S_IMODE(os.stat(path).st_mode) & 0o077:
                loose.append(os.path.relpath(path, base))
        # rbdmig's keyrings are 0600; what Ceph makes readable (its
        # mon's store) is in a directory no one else may enter.
        assert not [p for p in loose if p.endswith('keyring')]
        assert stat.S_IMODE(os.stat(base).st_mode) == 0o700
        assert len(keys) >= 3  # admin, mgr, osd at least
    finally:
        assert cli.main(['sandbox-stop', base]) == 0
    out, err = capsys.readouterr()
    assert 'is up' in out
    for key in keys:
        assert key not in out and key not in err
