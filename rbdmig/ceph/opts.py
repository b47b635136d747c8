"""rbdmig's own RBD options, and the Backend a driver's options describe."""

import time

from oslo_config import cfg
from oslo_utils import units

from rbdmig.ceph import backend
from rbdmig.ceph import connection
from rbdmig.ceph import methods

# Options Cinder's RBD driver does not have.  Both of rbdmig's RBD drivers
# register them; under Cinder they sit beside Cinder's own.
MIGRATION_OPTS = [
    cfg.StrOpt('rbd_migration_method', default='offload',
               choices=[('copy', 'librbd copy; refuses volumes with '
                                 'snapshots'),
                        ('clone_flatten', 'snapshot, clone, flatten; '
                                          'refuses volumes with snapshots'),
                        ('deep_copy', 'librbd deep copy; keeps '
                                      'snapshots'),
                        ('live', 'RBD live migration with native '
                                 'progress; keeps snapshots'),
                        ('extents', 'librbd async I/O over the '
                                    'allocated extents, with progress, '
                                    'as thin as the source; volumes with '
                                    'snapshots go by deep_copy'),
                        ('offload', 'the default: each existing data '
                                    'object copied OSD to OSD (RADOS '
                                    'copy_from), nothing through this '
                                    'host; needs rbdmig.ext built; '
                                    'snapshots and clones go by deep_copy,'
                                    ' with no extension built, by extents')],
               help='How ``migrate_volume`` copies an image between two '
                    'pools of one cluster.  A move into another cluster '
                    'always uses ``extents``.  See README.rst for '
                    'timings.'),
    cfg.IntOpt('rbd_migration_queue_depth', default=16, min=1, max=1024,
               help='The number of requests the ``extents`` migration '
                    'method keeps in flight; its memory use is about this '
                    'times ``rbd_migration_chunk_size``.'),
    cfg.IntOpt('rbd_migration_chunk_size', default=4 * units.Mi,
               min=64 * units.Ki, max=64 * units.Mi,
               help='The size in bytes of each read and write of the '
                    '``extents`` migration method (see '
                    '``rbd_migration_queue_depth``).'),
    cfg.FloatOpt('rbd_offload_through_host_below', default=0.0, min=0.0,
                 max=1.0,
                 help='The ``offload`` method copies an object whose data '
                      'fills less than this share of it through this '
                      'host, its data only (as librbd\'s own copies do), '
                      'and a denser one whole inside the OSDs '
                      '(``copy_from``; its holes are zeroed after, so the '
                      'copy takes the room the source does).  0 (the '
                      'default) copies every object inside the OSDs, no '
                      'data crossing this host: behind a link narrower '
                      'than the cluster that is fastest by far.  A host '
                      'as close to the OSDs as they are to each other '
                      'moves volumes of partly written objects somewhat '
                      'faster with 0.5.  See README.rst for the '
                      'measurements.'),
    cfg.StrOpt('migration_verify', default='extents',
               choices=[('none', 'size, and snapshot names where kept'),
                        ('extents', 'also the allocation maps, at object '
                                    'granularity (reads only source '
                                    'objects the copy lacks, to prove '
                                    'them zeros)'),
                        ('osd_checksum', 'also the data, object by '
                                         'object: each OSD hashes its own '
                                         'objects of both images '
                                         '(XXH64), no data crosses this '
                                         'host; clones, striped images '
                                         'and different object sizes '
                                         'fall back to checksum; needs '
                                         'rbdmig.ext built'),
                        ('checksum', 'also every byte either image '
                                     'holds, read from both on this '
                                     'host')],
               help='What is checked of a copy before its source is '
                    'removed (``live`` moves are checked for size and '
                    'snapshots: librbd serves the target from the source '
                    'until commit).  ``extents`` reads no data: a copy '
                    'with the right layout and a wrong byte passes it.  '
                    'See README.rst (Benchmark) for the cost of each.'),
    cfg.IntOpt('rbd_concurrent_management_ops', default=0, min=0,
               help='librbd\'s ``rbd_concurrent_management_ops`` (objects '
                    'copied in parallel by ``Image.copy``, ``deep_copy``, '
                    '``flatten`` and live migration) on the connections '
                    'of a migration; 0 leaves librbd\'s own setting (10 '
                    'unless ceph.conf says otherwise).'),
    cfg.IntOpt('rados_osd_op_timeout', min=0,
               help='Seconds one OSD operation of a migration may take '
                    'before it fails, so that a stopped or unreachable '
                    'OSD ends the migration (cleanly, the source intact) '
                    'instead of hanging it; 0 waits forever.  Unset (the '
                    'default), ceph.conf decides: its ``rados osd op '
                    'timeout``, else librados\' default (wait forever).  '
                    '120 rides through an OSD being marked down and its '
                    'placement groups peering elsewhere.'),
]


def limits(configuration):
    """Return the connection :class:`~connection.Limits` of a backend.

    ``rados_connect_timeout``, ``rados_connection_retries`` and
    ``rados_connection_interval`` are Cinder's options, with Cinder's
    meanings (retries counts attempts, at least one).
    """
    return connection.Limits(
        connect_timeout=configuration.rados_connect_timeout,
        attempts=max(1, configuration.rados_connection_retries),
        interval=configuration.rados_connection_interval,
        osd_op_timeout=configuration.rados_osd_op_timeout,
        concurrent_management_ops=(
            configuration.rbd_concurrent_management_ops))


def make_backend(configuration, name, address, rados, rbd,
                 sleep=time.sleep, shared=None):
    """Return the :class:`~backend.Backend` a backend's options describe.

    :param address: how this backend reaches its cluster.
    :param shared: a :class:`~connection.Shared`, or None.
    """
    method = configuration.rbd_migration_method
    if method not in methods.METHODS:
        raise ValueError('unknown rbd_migration_method %r' % method)
    return backend.Backend(
        name=name, address=address, pool=configuration.rbd_pool,
        limits=limits(configuration), rados=rados, rbd=rbd, method=method,
        queue_depth=configuration.rbd_migration_queue_depth,
        chunk_size=configuration.rbd_migration_chunk_size,
        offload_through_host=(
            configuration.rbd_offload_through_host_below),
        verify=configuration.migration_verify,
        progress_interval=(
            configuration.migration_progress_report_interval),
        sleep=sleep, shared=shared)


def capabilities(configuration):
    """What a backend publishes about its migration methods."""
    from rbdmig import ext
    offload = ext.available()
    names = sorted(name for name in methods.METHODS
                   if offload or name != 'offload')
    return {'rbd_migration_method': configuration.rbd_migration_method,
            'rbd_migration_methods': names,
            'offload_available': offload,
            'offload_unavailable_reason': ext.unavailable_reason()}
