"""Liveness from Ceph: a migrating client watches its journal record."""

import contextlib
import dataclasses
import json
import re
import shutil
import subprocess
import time

from oslo_log import log as logging

from rbdmig import exception
from rbdmig import native

LOG = logging.getLogger(__name__)

# librados keeps a watch this long after its client stopped pinging (the
# OSDs' ``osd_client_watch_timeout`` default): a killed process's record
# is taken over by another host this long after the kill at the latest.
WATCH_TIMEOUT = 30
_LINE = re.compile(r'watcher=(?P<addr>\S+) client\.(?P<id>\d+) ')
# Watches whose close failed (the cluster stopped answering): librados
# still holds them, with callbacks into their Python objects, until its
# client shuts down.  Freed, such an object would be called into after
# its death (seen: the process aborted in Rados.shutdown); kept here.
_UNCLOSED = []


@dataclasses.dataclass(frozen=True)
class Watcher:
    """A client watching an object: its librados instance id, address."""

    client: int
    addr: str


@contextlib.contextmanager
def watching(ioctx, oid):
    """Hold a watch on ``oid`` while the block runs.

    The OSD drops the watch once this client stops answering (killed,
    cut off or blocklisted), so "a watcher remains" means "the client
    still runs", whichever host it is on.
    """
    handle = native.call(ioctx.watch, oid, _ignore_notify, _ignore_error,
                         WATCH_TIMEOUT)
    try:
        yield handle
    finally:
        try:
            native.call(handle.close)
        except Exception:  # noqa: BLE001 - gone with its object: fine
            _UNCLOSED.append(handle)
            LOG.debug('Closing the watch on %s failed; harmless.', oid)


def _ignore_notify(*args):
    return None


def _ignore_error(*args):
    return None


def watchers(ioctx, address, pool, oid, timeout=30):
    """The clients watching ``oid`` in ``pool``.

    librados' Python binding cannot list watchers: an ioctx that can
    (the unit tests' fake) is asked, else the ``rados`` tool
    (ceph-common), with this backend's cluster, conf, user and keyring.

    :raises VolumeBackendAPIException: neither could list them.
    """
    lister = getattr(ioctx, 'list_watchers', None)
    if lister is not None:
        return [Watcher(w['client'], w['addr']) for w in lister(oid)]
    tool = shutil.which('rados')
    if tool is None:
        raise exception.VolumeBackendAPIException(
            data='the rados tool (ceph-common) is needed to list the '
                 'watchers of the migration journal')
    cmd = [tool, '--cluster', address.cluster_name or 'ceph']
    if address.conf:
        cmd += ['-c', address.conf]
    if address.user:
        cmd += ['--id', address.user]
    if address.keyring:
        cmd += ['--keyring', address.keyring]
    cmd += ['-p', pool, 'listwatchers', oid]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True,
                             timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise exception.VolumeBackendAPIException(
            data='listing the watchers of %s timed out' % oid)
    if out.returncode and '(2)' in out.stderr:
        return []  # ENOENT: the record went meanwhile
    if out.returncode:
        raise exception.VolumeBackendAPIException(
            data='listing the watchers of %s failed: %s'
                 % (oid, out.stderr.strip()[-200:]))
    return [Watcher(int(m.group('id')), m.group('addr'))
            for m in _LINE.finditer(out.stdout)]



def fence(client, addrs, still_watched, what, timeout=WATCH_TIMEOUT):
    """Blocklist the clients at ``addrs`` and wait until their watches
    are gone: from then on none of them can write to the cluster.

    A killed process's watches and locks linger until they time out; a
    process thought dead that is not must not write once another acts.

    :param still_watched: ``still_watched()``: whether any of their
        watches remain, asked until it says no.
    :param what: what they watched, for the error.
    :raises VolumeBackendAPIException: blocklisting failed, or a watch
        remains ``timeout`` seconds later.
    """
    for addr in sorted(addrs):
        LOG.warning('Blocklisting the client at %(addr)s, watching '
                    '%(what)s.', {'addr': addr, 'what': what})
        _blocklist(client, addr)
    deadline = time.monotonic() + timeout
    while still_watched():
        if time.monotonic() >= deadline:
            raise exception.VolumeBackendAPIException(
                data='%s is still watched by a blocklisted client'
                     % what)
        time.sleep(0.2)


def _blocklist(client, addr):
    ret, _out, err = client.mon_command(json.dumps({
        'prefix': 'osd blocklist', 'blocklistop': 'add', 'addr': addr}),
        b'')
    if ret:
        raise exception.VolumeBackendAPIException(
            data='blocklisting %s failed: %s' % (addr, err))
