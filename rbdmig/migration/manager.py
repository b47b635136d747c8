"""Standalone migration: assisted when the backends allow, else generic."""

import contextlib
import dataclasses
import time

from oslo_log import log as logging

from rbdmig import exception
from rbdmig import objects
from rbdmig.migration import compare
from rbdmig.migration import progress

LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class MigrationResult:
    """How a volume moved.

    :ivar path: ``'assisted'`` (the source driver moved it) or
        ``'generic'`` (blocks copied through this host).
    :ivar volume: the volume as it now is, on the destination.
    :ivar seconds: wall time of the whole migration.
    :ivar copy: the generic copy's :class:`CopyResult`, or None.
    """

    path: str
    volume: object
    seconds: float
    copy: object = None


def destination_host(dst_driver):
    """Return the ``host`` argument cinder would pass for ``dst_driver``."""
    caps = dst_driver.get_volume_stats(refresh=True)
    pool = dst_driver.configuration.safe_get('rbd_pool')
    host = dst_driver.host or caps.get('volume_backend_name')
    return {'host': '%s#%s' % (host, pool or caps.get('volume_backend_name')),
            'capabilities': caps}


def sharing(*drivers):
    """A block in which ``drivers`` keep one client per cluster.

    The first driver that can (``sharing_connections``, rbdmig's RBD
    driver) shares with the others it can; drivers that cannot are left
    as they are.  Every check still runs; only connecting is saved.
    """
    for n, drv in enumerate(drivers):
        share = getattr(drv, 'sharing_connections', None)
        if share is not None:
            return share(*drivers[n + 1:])
    return contextlib.nullcontext()


def migrate(context, volume, src_driver, dst_driver,
            callback=progress.DEFAULT_CALLBACK, allow_generic=True):
    """Move ``volume`` from ``src_driver``'s backend to ``dst_driver``'s.

    The source driver is asked first (``migrate_volume``); when it answers
    ``(False, None)`` the volume is created on the destination under the
    same name, its blocks copied, the copy compared with the source
    (every byte either holds data in), the source checked again for
    clients, and only then the source deleted.  A failed copy, a copy
    that differs (a client wrote to the source meanwhile) or a source a
    client opened deletes the destination and leaves the source.  A
    volume in use is refused before anything is asked or created: no one
    can say which of its blocks the copy would see.

    :returns: a :class:`MigrationResult`.
    :raises VolumeInUse: the volume's status is ``in-use``, it has
        attachments, or its driver sees clients with it open.
    :raises VolumeNotFound: the source driver cannot find the volume.
    :raises VolumeExists: the destination already has a volume of that
        name (it is never overwritten).
    :raises MigrationError: the source driver refused and
        ``allow_generic`` is false; or a client opened the source during
        the copy (the source is intact, the copy removed).
    :raises CopyError: the copy differs from the source (the source is
        intact, the copy removed).
    """
    # Its checks, the destination's stats and the move connect once per
    # cluster: a small volume's move cost two connections more.
    with sharing(src_driver, dst_driver):
        return _migrate(context, volume, src_driver, dst_driver, callback,
                        allow_generic)


def _migrate(context, volume, src_driver, dst_driver, callback,
             allow_generic):
    start = time.monotonic()
    _check_not_in_use(volume, src_driver)
    host = destination_host(dst_driver)
    moved, model_update = src_driver.migrate_volume(context, volume, host,
                                                    callback=callback)
    if moved:
        moved_volume = _moved(volume, host, model_update)
        return MigrationResult('assisted', moved_volume,
                               time.monotonic() - start)
    if not allow_generic:
        raise exception.MigrationError(
            volume=volume.id, reason='the backend cannot move it and the '
                                     'generic path was not allowed.')
    new_volume = _moved(volume, host, None)
    dst_driver.create_volume(new_volume)
    # Zeros may be skipped only on this destination, created just now, and
    # only when its driver says a new volume reads as zeros.
    zeroed = getattr(dst_driver, 'CREATES_ZEROED_VOLUMES', False)
    try:
        copied = src_driver.copy_volume_data(context, volume, new_volume,
                                             dest_driver=dst_driver,
                                             callback=callback,
                                             dest_zeroed=zeroed)
        compare.check_copy(src_driver, volume, dst_driver, new_volume)
        _check_not_opened(volume, src_driver)
    except BaseException:
        _discard(volume, dst_driver, new_volume)
        raise
    try:
        src_driver.delete_volume(volume)
    except Exception as err:
        if _opened(volume, src_driver):
            # Refused before anything was removed (librbd checks for
            # clients first): the source is the volume.
            _discard(volume, dst_driver, new_volume)
            raise exception.MigrationError(
                volume=volume.id,
                reason='a client opened it as its source was being '
                       'removed; the copy was removed and the source is '
                       'intact.') from err
        LOG.exception('LEFTOVER: %s was copied to %s but deleting the '
                      'source failed; remove it by hand.', volume.id,
                      host['host'])
    return MigrationResult('generic', new_volume, time.monotonic() - start,
                           copied)


def _discard(volume, dst_driver, copy):
    """Remove the destination of a failed generic copy."""
    LOG.error('Copying %s failed; removing the destination, the source is '
              'intact.', volume.id)
    try:
        dst_driver.delete_volume(copy)
    except Exception:
        LOG.exception('Could not remove the destination of %s.', volume.id)


def _opened(volume, src_driver):
    in_use = getattr(src_driver, 'volume_in_use', None)
    try:
        return in_use is not None and in_use(volume)
    except Exception:
        return False


def _check_not_opened(volume, src_driver):
    """Raise if a client opened the source during its copy."""
    if _opened(volume, src_driver):
        raise exception.MigrationError(
            volume=volume.id,
            reason='a client opened it during the copy and may have '
                   'written to it since, so the copy cannot replace it; '
                   'the source is intact.')


def _check_not_in_use(volume, src_driver):
    """Raise VolumeInUse if the volume is attached or open anywhere."""
    attachments = getattr(volume, 'volume_attachment', None) or []
    if volume.status == 'in-use' or attachments:
        raise exception.VolumeInUse(
            volume=volume.id,
            reason='its status is %.40r and it has %d attachment(s); detach '
                   'it first.' % (volume.status, len(attachments)))
    in_use = getattr(src_driver, 'volume_in_use', None)
    if in_use is not None and in_use(volume):
        raise exception.VolumeInUse(
            volume=volume.id,
            reason='a client has it open on its backend, so its data may '
                   'change during the copy; close it first.')


def _moved(volume, host, model_update):
    """Return a Volume record for ``volume`` on the destination host."""
    fields = {f: getattr(volume, f, None) for f in objects.Volume.FIELDS}
    fields.update(host=host['host'], migration_status='success')
    fields.update(model_update or {})
    return objects.Volume(**fields)
