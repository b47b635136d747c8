"""Standalone migration: assisted when the backends allow, else generic."""

import contextlib
import dataclasses
import time

from oslo_log import log as logging

from rbdmig import exception
from rbdmig import faults
from rbdmig import objects
from rbdmig.migration import fence
from rbdmig.migration import phases
from rbdmig.migration import progress

LOG = logging.getLogger(__name__)

# The retired name's tag of this module's generic moves: one per volume
# (``<name>.rbdmig-generic.retired``), so that :func:`recover` knows
# where a killed move left its source without any record of it.
TAG = 'generic'


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
    ``(False, None)`` the generic copy follows.  A source it would not
    hold whole is refused before anything is created: snapshots or
    clones (they would be lost with the source), an image larger than
    ``volume.size`` (what lies past it would be), or a driver that cannot
    rename it.  Then the volume is created on the destination under the
    same name, its blocks copied, and the source checked for clients.
    Then the source is renamed (``<name>.rbdmig-generic.retired``)
    out of the reach of clients that open it by name, checked again there
    (no client holds it, no snapshot appeared) and compared with the copy
    (every byte either holds data in), and only then deleted: nothing a
    client writes between a check and the removal is lost.  A failed
    copy, a copy that differs (a client wrote to the source meanwhile) or
    a source a client opened gives the source its name back and deletes
    the destination.  A volume in use is refused before anything is asked
    or created: no one can say which of its blocks the copy would see.
    A process killed during the generic copy keeps no record: the source
    is whole (under its name or its retired one) until its removal began,
    and :func:`recover` puts the volume back in one place.

    :returns: a :class:`MigrationResult`.
    :raises VolumeInUse: the volume's status is ``in-use``, it has
        attachments, or its driver sees clients with it open.
    :raises VolumeNotFound: the source driver cannot find the volume.
    :raises VolumeExists: the destination already has a volume of that
        name (it is never overwritten).
    :raises MigrationRefused: the source is not one a copy holds whole,
        or a move killed earlier left it retired (:func:`recover` it
        first); nothing was created.
    :raises MigrationError: the source driver refused and
        ``allow_generic`` is false; or a client opened the source during
        the copy (the source is intact, the copy removed); or the source
        could not get its name back (the copy is kept; the message says
        where the source is).
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
    source = fence.Source(src_driver, volume, TAG)
    _refuse_if_retired(source)
    _check_not_in_use(volume, src_driver)
    host = destination_host(dst_driver)
    moved, model_update = src_driver.migrate_volume(context, volume, host,
                                                    callback=callback)
    if moved:
        moved_volume = moved_record(volume, host, model_update)
        return MigrationResult('assisted', moved_volume,
                               time.monotonic() - start)
    if not allow_generic:
        raise exception.MigrationError(
            volume=volume.id, reason='the backend cannot move it and the '
                                     'generic path was not allowed.')
    fence.check_whole(src_driver, volume)
    new_volume = moved_record(volume, host, None)
    dst_driver.create_volume(new_volume)
    faults.point('manager.created')
    # Zeros may be skipped only on this destination, created just now, and
    # only when its driver says a new volume reads as zeros.
    zeroed = getattr(dst_driver, 'CREATES_ZEROED_VOLUMES', False)
    try:
        copied = src_driver.copy_volume_data(context, volume, new_volume,
                                             dest_driver=dst_driver,
                                             callback=callback,
                                             dest_zeroed=zeroed)
        faults.point('manager.copied')
        _check_not_opened(volume, src_driver)
    except BaseException:
        _discard(volume, dst_driver, new_volume)
        raise
    _replace(source, dst_driver, new_volume, host)
    return MigrationResult('generic', new_volume, time.monotonic() - start,
                           copied)


def recover(volume, src_driver, dst_driver):
    """Put right a :func:`migrate` killed in its generic copy; see
    :func:`rbdmig.migration.unrecorded.recover`."""
    # Imported here: that module builds on this one's helpers.
    from rbdmig.migration import unrecorded

    return unrecorded.recover(volume, src_driver, dst_driver)


def _refuse_if_retired(source):
    """Refuse a volume whose source a killed move left retired: the move
    to make is :func:`recover`'s, and this one's retirement would fail."""
    if fence.presence(source.drv, source.retired) == phases.PRESENT:
        raise exception.MigrationRefused(
            volume=source.volume.id,
            reason='a migration of it that did not finish (its process '
                   'was killed) left its source retired as %s; '
                   'rbdmig.migration.manager.recover() gives it its name '
                   'back, or finishes that migration.' % source.retired.name)


def _replace(source, dst_driver, copy, host):
    """Retire the source, check it and the copy a last time, remove it.

    Between a check and the removal, a client could open the source,
    write and close it, leaving no trace but its data: renamed, it can
    no longer be opened by its name, so the last check is final.
    """
    volume, src_driver = source.volume, source.drv
    try:
        source.retire()
    except (exception.VolumeExists, exception.VolumeNotFound) as err:
        # Not renamed.  Its retired name was free before the copy, and the
        # source under its name: another move took either meanwhile, and
        # what is retired now is not this move's to give back.
        _discard(volume, dst_driver, copy)
        raise exception.MigrationError(
            volume=volume.id,
            reason='another migration of it ran meanwhile (%s); this one\'s '
                   'copy was removed, and nothing else was changed.'
                   % err) from err
    except BaseException:
        _give_back(source, dst_driver, copy)
        raise
    try:
        faults.point('manager.retired')
        source.check(dst_driver, copy)
        faults.point('manager.checked')
    except BaseException:
        _give_back(source, dst_driver, copy)
        raise
    try:
        src_driver.delete_volume(source.retired)
    except Exception as err:
        if _opened(source.retired, src_driver):
            # Refused before anything was removed (librbd checks for
            # clients first): the source is the volume.
            _give_back(source, dst_driver, copy)
            raise exception.MigrationError(
                volume=volume.id,
                reason='a client opened it as its source was being '
                       'removed; the copy was removed and the source is '
                       'intact.') from err
        LOG.exception('LEFTOVER: %s was copied to %s but deleting its '
                      'retired source %s failed; remove it by hand.',
                      volume.id, host['host'], source.retired.name)


def _give_back(source, dst_driver, copy):
    """The source gets its name back; then, only then, the copy goes.

    :raises MigrationError: the name could not be given back: the copy
        is kept, and the message says where the source is.
    """
    volume, retired = source.volume, source.retired
    try:
        back = source.give_back()
    except Exception as err:
        LOG.exception('Could not give %s its name back.', volume.name)
        raise exception.MigrationError(
            volume=volume.id,
            reason='its source could not get its name back (%s): it is '
                   'whole as %s, to rename to %s by hand; its copy was '
                   'kept.' % (err, retired.name, volume.name)) from err
    if back:
        _discard(volume, dst_driver, copy)
    else:
        LOG.error('The source of %s is under neither %s nor %s: its copy '
                  'is kept.', volume.id, volume.name, retired.name)


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


def moved_record(volume, host, model_update):
    """Return a Volume record for ``volume`` on the destination host."""
    fields = {f: getattr(volume, f, None) for f in objects.Volume.FIELDS}
    fields.update(host=host['host'], migration_status='success')
    fields.update(model_update or {})
    return objects.Volume(**fields)
