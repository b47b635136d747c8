"""Method ``offload``: the OSDs copy the objects (``copy_from``)."""

from oslo_log import log as logging

from rbdmig import ext
from rbdmig import native
from rbdmig.ceph import data_objects
from rbdmig.ceph import images
from rbdmig.ceph.methods import base

LOG = logging.getLogger(__name__)


class OffloadMethod(base.Method):
    """Each data object copied OSD to OSD: no data crosses this host.

    Unless ``through_host`` (``rbd_offload_through_host_below``) is a
    share above 0: an object whose data fills less of it is copied
    through this host, its data only, as librbd's copies do
    (``copy_from`` copies an object's holes as zeros).

    Only the objects the source holds are copied, so the cost follows the
    data, not the volume's size: they are read from the source's object
    map where fast-diff is valid (and the image not fancy-striped), else
    from a listing of its data pool (:func:`data_objects.existing`).  The
    copy is created with the source's size, order, striping and features
    (its object map, if any, says every object is absent), its objects are
    written behind librbd's back by ``copy_from``
    (:func:`rbdmig.ext.copy_objects`, ``queue_depth`` in flight; a source
    object gone meanwhile is skipped, so it stays as thin as the source),
    then its object map is told exactly which objects were written
    (:func:`data_objects.mark_existing`: one call per run of consecutive
    objects, or one load and save of the whole map past a few runs; not
    the stat per object of a rebuild).  Progress counts
    objects, reported as bytes.

    Data pools: the copy gets the data pool any new image of the
    destination pool gets (its client's ``rbd_default_data_pool``, or
    none), as with every other method: librbd's copies decide so too, and
    the source's data pool is not carried over.  Objects are read from the
    pool the source's data lives in and written into the one the created
    copy's data lives in (both images' ``data_pool_id()``), so librbd
    reads the copy where it was written and no object is left behind.

    Where ``copy_from`` cannot make the copy, :meth:`substitute` names the
    method that can: a volume with snapshots or a clone (whose parent's
    data is not in its objects) goes by ``deep_copy``, which keeps both;
    with no extension built, by ``extents``.  Within one cluster only.
    """

    name = 'offload'
    snapshots_by = 'deep_copy'

    def __init__(self, queue_depth=16, through_host=0.0):
        self.queue_depth = queue_depth
        self.through_host = through_host

    def configured(self, backend):
        """Return a copy of this method with ``backend``'s settings."""
        return type(self)(queue_depth=backend.queue_depth,
                          through_host=backend.offload_through_host)

    def through_host_below(self, object_size):
        """Bytes of data under which an object is copied through here."""
        if self.through_host <= 0:
            return 0
        return min(object_size, max(1, int(self.through_host *
                                            object_size)))

    def substitute(self, source):
        """``(method name, why)`` when another method must move it."""
        if not ext.available():
            return 'extents', ext.unavailable_reason()
        if source.parent:
            return 'deep_copy', 'it is a clone, whose parent\'s data is ' \
                'not in its own objects (deep_copy keeps the parent link)'
        return None

    def _copy(self, move, relay):
        rbd, src = move.rbd, move.source
        args = images.create_args(rbd, src)
        object_map = args['features'] & rbd.RBD_FEATURE_OBJECT_MAP
        # The destination's data pool (see above), said explicitly.
        args['data_pool'] = base.destination_data_pool(move)
        rbd.RBD().create(move.dst_ioctx, move.temp, move.size, **args)
        with rbd.Image(move.dst_ioctx, move.temp) as dst:
            self.tag(move, dst)
            images.copy_metadata(src, dst)
            dst_prefix = dst.stat()['block_name_prefix']
            dst_data = dst.data_pool_id()
            dst_id = dst.id()
        stat = src.stat()
        src_data = src.data_pool_id()
        numbers, found_by = native.call(data_objects.existing, rbd,
                                        move.src_ioctx, src, move.cluster)
        LOG.info('Copying %(count)d of the %(total)d objects of %(name)s '
                 '(those that exist, from its %(by)s).',
                 {'count': len(numbers), 'total': stat['num_objs'],
                  'name': move.name, 'by': found_by})
        counter = base.ScaledProgress(relay.sink, move.size)
        object_size = 1 << stat['order']
        result = native.run(lambda: ext.copy_objects(
            move.cluster, src_data, stat['block_name_prefix'], dst_data,
            dst_prefix, numbers, queue_depth=self.queue_depth,
            object_size=object_size,
            through_host_below=self.through_host_below(object_size),
            keep_holes=True, callback=counter), relay)
        if result.through_host:
            LOG.info('%(host)d of the %(copied)d objects of %(name)s held '
                     'little data and were copied through this host, their '
                     '%(mib).1f MiB of data only; the rest by the OSDs.',
                     {'host': result.through_host, 'copied': result.copied,
                      'name': move.name,
                      'mib': result.host_bytes / (1 << 20)})
        if result.punched:
            LOG.info('%(punched)d of the objects of %(name)s copied by the '
                     'OSDs had holes; their %(mib).1f MiB of zeros were '
                     'freed, as the source holds none.',
                     {'punched': result.punched, 'name': move.name,
                      'mib': result.punched_bytes / (1 << 20)})
        if object_map:
            written = sorted(set(numbers) - set(result.missing))
            native.call(data_objects.mark_existing, move.dst_ioctx, dst_id,
                        written)
