"""Connections to a Ceph cluster: bounded in time, retried, off the loop."""

import contextlib
import dataclasses
import errno
import threading
import time

import tenacity
from oslo_log import log as logging

from rbdmig import exception
from rbdmig import native

LOG = logging.getLogger(__name__)

# librados errors that waiting will not cure: a wrong key or caps
# (EACCES/EPERM), a missing conf file or keyring (ENOENT), a bad setting
# (EINVAL).  Everything else (ETIMEDOUT first) is worth another attempt.
_PERMANENT = (errno.EACCES, errno.EPERM, errno.ENOENT, errno.EINVAL)


@dataclasses.dataclass(frozen=True)
class Address:
    """How this host reaches a cluster as a client.

    :ivar cluster_name: the cluster's name (``$cluster`` in ceph.conf).
    :ivar conf: the ceph.conf path; empty for librados' default search.
    :ivar user: the client name without ``client.``; None for librados'
        default (``admin``).
    :ivar keyring: a keyring path overriding the conf's, or None.
    """

    cluster_name: str = 'ceph'
    conf: str = ''
    user: str = None
    keyring: str = None

    def __str__(self):
        # What logs and errors may say: paths and names, never a key.
        return 'cluster %s (conf %s, user %s)' % (
            self.cluster_name or 'ceph', self.conf or 'default',
            self.user or 'default')


@dataclasses.dataclass(frozen=True)
class Limits:
    """How long connecting and each operation may take.

    :ivar connect_timeout: seconds one attempt to reach the monitors and
        authenticate may take (``client_mount_timeout``), also bounding
        monitor commands (``rados_mon_op_timeout``); negative leaves
        librados' defaults (300 s, unbounded).
    :ivar attempts: attempts at connecting, at least 1 (Cinder's
        ``rados_connection_retries`` counts attempts the same way).
    :ivar interval: seconds between two attempts.
    :ivar osd_op_timeout: seconds an OSD operation may take before it
        fails with ETIMEDOUT (``rados_osd_op_timeout``); 0 waits forever;
        None leaves ceph.conf's setting (librados' default: forever).
    :ivar concurrent_management_ops: librbd's
        ``rbd_concurrent_management_ops``; 0 keeps librbd's.
    """

    connect_timeout: int = -1
    attempts: int = 3
    interval: float = 5
    osd_op_timeout: int = None
    concurrent_management_ops: int = 0

    def worst_case(self):
        """Return the most seconds :func:`connect` may take to give up.

        None when ``connect_timeout`` is negative (librados' own bound).
        """
        if self.connect_timeout < 0:
            return None
        attempts = max(1, self.attempts)
        return attempts * self.connect_timeout + (attempts - 1) * (
            self.interval)


def client_conf(address, limits):
    """Return the settings given to ``rados.Rados(conf=...)``.

    Ceph 16's ``Rados.connect(timeout=N)`` ignores N: an absent monitor
    kept it waiting for minutes.  ``client_mount_timeout`` in the
    client's own conf is what bounds it (measured: 10.0 s for 10).
    """
    conf = {}
    if limits.connect_timeout >= 0:
        conf['client_mount_timeout'] = str(limits.connect_timeout)
        conf['rados_mon_op_timeout'] = str(limits.connect_timeout)
    if limits.osd_op_timeout is not None:
        # Set here, it overrides ceph.conf: only when the operator set it.
        conf['rados_osd_op_timeout'] = str(limits.osd_op_timeout)
    if limits.concurrent_management_ops > 0:
        conf['rbd_concurrent_management_ops'] = str(
            limits.concurrent_management_ops)
    if address.keyring:
        conf['keyring'] = address.keyring
    return conf


def _transient(err):
    errno_ = getattr(err, 'errno', None)
    return errno_ is None or abs(errno_) not in _PERMANENT


class Shared(object):
    """One connected client per cluster, for the many operations of a
    drain or of one move: connecting (monitors, authentication, the OSD
    map) is a good part of what a small volume's checks and move cost,
    paid once instead of each time.

    librados clients are thread-safe; each operation still opens and
    closes its own pool context, so its watches and locks end with it.
    :meth:`close` shuts every client down; holders that overlap
    (:meth:`hold`, :meth:`release`) close it when the last one leaves.
    """

    def __init__(self):
        self._clients = {}
        self._holders = 0
        self._lock = threading.Lock()

    def client(self, rados, address, limits, sleep):
        """The client of ``address`` with ``limits``, connected once."""
        with self._lock:
            key = (address, limits)
            if key not in self._clients:
                self._clients[key] = _connect_client(
                    native.Module(rados, ('Rados',)), rados, address,
                    limits, sleep)
            return self._clients[key]

    def hold(self):
        """Count one more user; return this object."""
        with self._lock:
            self._holders += 1
        return self

    def release(self):
        """Count one user less; the last one closes every client."""
        with self._lock:
            self._holders -= 1
            last = self._holders <= 0
        if last:
            self.close()

    def close(self):
        """Shut every client down."""
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.shutdown()


@contextlib.contextmanager
def connect(rados, address, limits, pool=None, sleep=time.sleep,
            shared=None):
    """Yield ``(client, ioctx)`` connected to ``address``.

    Both are shut down on exit.  Every librados call of the client runs
    through :mod:`rbdmig.native`, so a patched event loop is never
    blocked; ``ioctx`` is librados' own object (librbd needs it).
    Transient failures (timeouts) are retried ``limits.attempts`` times;
    a wrong key, a missing conf or keyring, or a missing pool fail at
    once.

    :param rados: the ``rados`` module (injectable for tests).
    :param pool: the pool to open; None yields ``ioctx`` None.
    :param shared: a :class:`Shared`: its client, left connected.
    :raises ClusterUnreachable: connecting failed; the message names the
        cluster, conf and user and librados' error, never a key.
    :raises PoolNotFound: the cluster has no pool ``pool``.
    """
    if shared is not None:
        client = shared.client(rados, address, limits, sleep)
    else:
        client = _connect_client(native.Module(rados, ('Rados',)), rados,
                                 address, limits, sleep)
    try:
        ioctx = None
        if pool is not None:
            try:
                ioctx = client.open_ioctx(pool)
            except rados.ObjectNotFound:
                raise exception.PoolNotFound(pool=pool,
                                             cluster=str(address))
        try:
            yield client, ioctx
        finally:
            if ioctx is not None:
                native.call(ioctx.close)
    finally:
        if shared is None:
            client.shutdown()


def _connect_client(native_rados, rados, address, limits, sleep):
    def attempt():
        client = native_rados.Rados(
            clustername=address.cluster_name or 'ceph',
            rados_id=address.user or None,
            conf=client_conf(address, limits),
            **({'conffile': address.conf} if address.conf else {}))
        try:
            client.connect()
        except BaseException:
            client.shutdown()
            raise
        return client

    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(max(1, limits.attempts)),
        wait=tenacity.wait_fixed(limits.interval),
        retry=tenacity.retry_if_exception(
            lambda err: isinstance(err, rados.Error) and _transient(err)),
        before_sleep=lambda state: LOG.warning(
            'Connecting to %(cluster)s failed (%(err)s); attempt %(n)d of '
            '%(total)d in %(wait)s s.',
            {'cluster': address, 'err': state.outcome.exception(),
             'n': state.attempt_number + 1, 'total': limits.attempts,
             'wait': limits.interval}),
        sleep=sleep, reraise=True)
    start = time.monotonic()
    try:
        return retrying(attempt)
    except rados.Error as err:
        raise exception.ClusterUnreachable(
            cluster=str(address), seconds=time.monotonic() - start,
            reason=err) from err
