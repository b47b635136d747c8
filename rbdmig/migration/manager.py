"""Standalone migration: assisted when the backends allow, else generic."""

import contextlib
import dataclasses
import time

from oslo_log import log as logging

from rbdmig import exception
from rbdmig import faults
from rbdmig import objects
from rbdmig.migration import compare
from rbdmig.migration import copy as copy_engine
from rbdmig.migration import fence
from rbdmig.migration import phases
from rbdmig.migration import progress

LOG = logging.getLogger(__name__)

# The retired name's tag of this module's generic moves: one per volume
# (``<name>.rbdmig-generic.retired``), so that :func:`recover` knows
# where a killed move left its source without any record of it.
TAG = 'generic'
# What stops a move here and now, its cleanup run: any error, Ctrl-C, or
# sys.exit() (a SIGTERM handler's).  A kill runs nothing, and
# :func:`recover` puts it right; so does any other BaseException (the
# unit tests kill with one).
STOPS = (Exception, KeyboardInterrupt, SystemExit)

# :func:`recover`'s outcomes.
NOTHING = 'nothing to recover'
ROLLED_BACK = 'rolled back'
COMPLETED = 'completed'


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


@dataclasses.dataclass(frozen=True)
class Recovery:
    """What :func:`recover` found and did.

    :ivar outcome: :data:`NOTHING` (the source is under its name and
        nothing of a move is left), :data:`ROLLED_BACK` (the source is
        the volume, under its name; what the move left was removed, but
        what :attr:`kept` names) or
        :data:`COMPLETED` (the move had verified its copy and begun
        removing the source: the copy is the volume).
    :ivar volume: the volume's record where it now is: ``volume`` as
        given, or (completed) a record of it on the destination.
    :ivar done: what was done, a sentence each, in order.
    :ivar kept: what was left alone and why, a sentence each: a copy
        holding data its source does not (a volume not ours to remove).
    """

    outcome: str
    volume: object
    done: tuple = ()
    kept: tuple = ()


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
    try:
        _check_not_in_use(volume, src_driver)
    except exception.VolumeNotFound:
        _refuse_if_retired(source)
        raise
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
    fence.check_whole(src_driver, volume)
    _refuse_if_retired(source)
    new_volume = _moved(volume, host, None)
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
    except STOPS:
        _discard(volume, dst_driver, new_volume)
        raise
    _replace(source, dst_driver, new_volume, host)
    return MigrationResult('generic', new_volume, time.monotonic() - start,
                           copied)


def recover(context, volume, src_driver, dst_driver):
    """Put right a :func:`migrate` whose process was killed in its
    generic copy: afterwards the volume is in one place, whole.

    Call it with the arguments the killed :func:`migrate` had, before
    anything else touches the volume.  Nothing records such a move, but
    each of its steps leaves the source in a place that says how far it
    got (the source driver is asked, then the destination's):

    * the source under its name: the move died before retiring it (or
      never began).  The source is the volume;
    * the source under its retired name (``<name>.rbdmig-generic
      .retired``): it died after the copy and before the source's
      removal began, which only follows the last checks.  The source
      gets its name back and is the volume;
    * under neither (or half-removed: it lists but no longer opens): its
      removal had begun, after the copy was verified against it.  The
      copy is the volume; what the removal left is removed.

    Then, unless the copy is the volume, a volume of its name on the
    destination is removed only if it holds nothing the source does not:
    of the source's size, every sector reading as the source's or as
    zeros (a copy cut short, or complete).  Anything else is not
    provably this move's, and is kept (:attr:`Recovery.kept` says so).

    :returns: a :class:`Recovery`.
    :raises MigrationError: the source is under both names (a rename
        interrupted inside the backend, or another volume took the name),
        or a backend cannot say whether the volume exists: nothing was
        changed; or the retired source could not get its name back.
    :raises VolumeNotFound: the volume is in neither place.
    """
    with sharing(src_driver, dst_driver):
        return _recover(volume, src_driver, dst_driver)


def _recover(volume, src_driver, dst_driver):
    source = fence.Source(src_driver, volume, TAG)
    host = destination_host(dst_driver)
    copy = _moved(volume, host, None)
    named = fence.presence(src_driver, volume)
    retired = fence.presence(src_driver, source.retired)
    held = fence.presence(dst_driver, copy)
    where = {'source': named, 'retired source': retired, 'copy': held}
    unknown = sorted(k for k, v in where.items() if v == phases.UNKNOWN)
    if unknown:
        raise exception.MigrationError(
            volume=volume.id,
            reason='its backends could not say whether its %s exists; '
                   'nothing was changed, recover again once they answer.'
                   % ' and '.join(unknown))
    if named == phases.PRESENT and retired == phases.PRESENT:
        raise exception.MigrationError(
            volume=volume.id,
            reason='its source is both under its name %s and under its '
                   'retired name %s (a rename cut short inside the '
                   'backend, or a volume created under its name since): '
                   'nothing was changed; keep the one holding its data '
                   'and remove the other by hand.'
                   % (volume.name, source.retired.name))
    done = []
    if named == retired == phases.MISSING:
        if held != phases.PRESENT:
            raise exception.VolumeNotFound(name=volume.name)
        # Half-removed (RBD: it lists, but no longer opens), or gone.
        src_driver.delete_volume(source.retired)
        done.append('The removal of the source %s, begun after its copy '
                    'on %s was verified, was finished; the copy is the '
                    'volume.' % (source.retired.name, host['host']))
        LOG.info('Recovered the migration of %(vol)s: %(done)s',
                 {'vol': volume.id, 'done': done[0]})
        return Recovery(COMPLETED, copy, tuple(done))
    if retired == phases.PRESENT:
        try:
            src_driver.rename_volume(source.retired, volume.name)
        except Exception as err:
            raise exception.MigrationError(
                volume=volume.id,
                reason='its source, whole as %s, could not get its name '
                       'back (%s); nothing else was changed.'
                       % (source.retired.name, err)) from err
        done.append('The source got its name %s back (it was retired as '
                    '%s).' % (volume.name, source.retired.name))
    kept = []
    if held == phases.PRESENT:
        why = _not_ours(src_driver, volume, dst_driver, copy)
        if why:
            kept.append('%s on %s was left alone: %s.'
                        % (volume.name, host['host'], why))
        else:
            dst_driver.delete_volume(copy)
            done.append('Its copy on %s, which held nothing the source '
                        'does not, was removed.' % host['host'])
    for line in done + kept:
        LOG.info('Recovering the migration of %(vol)s: %(line)s',
                 {'vol': volume.id, 'line': line})
    found = phases.PRESENT in (retired, held)
    return Recovery(ROLLED_BACK if found else NOTHING, volume, tuple(done),
                    tuple(kept))


def _not_ours(src_driver, volume, dst_driver, copy):
    """Why ``copy`` may hold something ``volume`` does not (None: it
    holds nothing else, and removing it loses nothing)."""
    with contextlib.ExitStack() as stack:
        mine = src_driver.open_volume(None, volume, 'rb')
        stack.callback(src_driver.close_volume, None, volume, mine)
        theirs = dst_driver.open_volume(None, copy, 'rb')
        stack.callback(dst_driver.close_volume, None, copy, theirs)
        size = copy_engine.size_of(mine)
        held = copy_engine.size_of(theirs)
        if held != size:
            return ('it holds %d bytes, its source %d: not a copy a '
                    'migration made' % (held, size))
        at = compare.first_foreign_byte(mine, theirs, size)
    if at is not None:
        return ('at byte %d it holds data its source does not (written '
                'there since, or not a copy a migration made); remove it '
                'by hand if it is not needed' % at)
    return None


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
    except exception.VolumeExists as err:
        # Its retired name was free a moment ago: taken meanwhile, not by
        # this source, which is still under its name.
        _discard(volume, dst_driver, copy)
        raise exception.MigrationError(
            volume=volume.id,
            reason='its retired name %s was taken during the copy; the '
                   'copy was removed and the source is intact.'
                   % source.retired.name) from err
    except STOPS:
        _give_back(source, dst_driver, copy)
        raise
    try:
        faults.point('manager.retired')
        source.check(dst_driver, copy)
        faults.point('manager.checked')
    except STOPS:
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


def _moved(volume, host, model_update):
    """Return a Volume record for ``volume`` on the destination host."""
    fields = {f: getattr(volume, f, None) for f in objects.Volume.FIELDS}
    fields.update(host=host['host'], migration_status='success')
    fields.update(model_update or {})
    return objects.Volume(**fields)
