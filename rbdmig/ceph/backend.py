"""An RBD backend as the migration engine sees it: where, how, how fast."""

import dataclasses
import time

from oslo_utils import units

from rbdmig import native
from rbdmig.ceph import connection


@dataclasses.dataclass(frozen=True)
class Backend:
    """One RBD backend: a pool of a cluster, reached as configured.

    Built by a driver from its options (:mod:`rbdmig.volume.drivers.rbd`
    standalone, :mod:`rbdmig.cinder` under Cinder); the engine
    (:mod:`rbdmig.ceph.migrate`) needs nothing else.

    :ivar name: the backend's name, for logs.
    :ivar address: how to reach its cluster.
    :ivar pool: its pool.
    :ivar limits: connection and operation time limits.
    :ivar method: ``rbd_migration_method``.
    :ivar queue_depth: requests in flight of the ``extents`` method.
    :ivar chunk_size: bytes per request of the ``extents`` method.
    :ivar offload_through_host: the share of an object under which the
        ``offload`` method copies it through this host, its data only
        (``rbd_offload_through_host_below``; 0: never).
    :ivar verify: ``migration_verify``: ``none``, ``extents``,
        ``osd_checksum`` or ``checksum`` (:mod:`rbdmig.ceph.verify`).
    :ivar progress_interval: seconds between two writes of a move's
        progress into its journal record
        (``migration_progress_report_interval``).
    :ivar rados: the ``rados`` module (injectable for tests).
    :ivar rbd: the ``rbd`` module (injectable for tests).
    :ivar sleep: the sleep between connection attempts.
    :ivar shared: a :class:`connection.Shared` whose clients
        :meth:`connect` uses (a drain's), or None: a client each time.
    """

    name: str
    address: connection.Address
    pool: str
    limits: connection.Limits
    rados: object
    rbd: object
    method: str = 'extents'
    queue_depth: int = 16
    chunk_size: int = 4 * units.Mi
    offload_through_host: float = 0.0
    verify: str = 'extents'
    progress_interval: int = 30
    sleep: object = time.sleep
    shared: object = None

    def cluster_spec(self, address=None):
        """How :mod:`rbdmig.ext` connects to this backend's cluster.

        :param address: another cluster's :class:`connection.Address`, to
            reach it with this backend's limits.
        """
        from rbdmig import ext
        address, limits = address or self.address, self.limits
        timeout = max(0, limits.connect_timeout)
        return ext.ClusterSpec(
            conf_path=address.conf or None,
            cluster_name=address.cluster_name or 'ceph',
            user=address.user or 'admin', keyring_path=address.keyring,
            client_mount_timeout=timeout, rados_mon_op_timeout=timeout,
            # 0 there keeps ceph.conf's (an explicit 0 cannot be said).
            rados_osd_op_timeout=limits.osd_op_timeout or 0)

    @property
    def native_rbd(self):
        """The ``rbd`` module with images and ``RBD()`` native-threaded."""
        return native.Module(self.rbd, ('Image', 'RBD'))

    def connect(self, pool=None, address=None):
        """Connect to this backend's cluster, or to ``address``.

        :param pool: the pool to open: this backend's when None, none
            when ``''``.
        :returns: the context manager of :func:`connection.connect`.
        """
        pool = self.pool if pool is None else (pool or None)
        return connection.connect(self.rados, address or self.address,
                                  self.limits, pool=pool, sleep=self.sleep,
                                  shared=self.shared)
