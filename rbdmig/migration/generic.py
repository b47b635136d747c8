"""The service's generic move: persisted steps, and recovery's decisions.

A generic move copies a volume through this host into a new, hidden
destination volume.  Each step is recorded before its action, and the
record alone tells recovery what may be done:

``migrating``, path ``generic`` (phase ``copying``)
    The destination is recorded (then created) and being copied; the
    checkpoint says how much of it is complete.  The source is the
    volume, untouched.
``completing`` (phase ``removing``)
    The destination is complete, verified against the source, and no
    client had the source open: the source is being removed.  From here
    the destination is the volume; the source may be partly removed.
``success``
    The record names the destination.

A destination is deleted only while the source is proven to exist (it
opens), never on an error that may say the source is gone, and only once
the record says the move failed (``error``): a record still saying
``completing`` while its copy goes would have recovery remove the
source.  Every write names the host running the move (the record's
``host``, the fencing token): a runner whose lease lapsed and whose move
another host's recovery took over can change nothing more, neither the
record nor the copy.  Recovery's decisions are
:data:`rbdmig.migration.phases.GENERIC_TABLE`'s.
"""


from oslo_log import log as logging

from rbdmig import exception
from rbdmig import faults
from rbdmig.db import migration_records
from rbdmig.migration import compare
from rbdmig.migration import inventory
from rbdmig.migration import phases
from rbdmig.db import states

LOG = logging.getLogger(__name__)

METHOD = 'generic'

# The service's statuses of a generic move, as the phases recovery
# decides on (:data:`phases.GENERIC_TABLE`).
GENERIC_PHASES = {states.MIGRATING: phases.COPYING,
                  states.COMPLETING: phases.REMOVING}


def decide(status, source):
    """Return what recovery does with a generic move in ``status``, its
    source found :data:`phases.PRESENT`, ``MISSING`` or ``UNKNOWN``."""
    return phases.decide_generic(GENERIC_PHASES[status], source)


class Undone(exception.MigrationError):
    """The move failed and its record says so already (``error``)."""


class CopyMissing(exception.MigrationError):
    """Recovery found no copy to finish a move forward with."""


class Unfinished(exception.MigrationError):
    """The source's removal failed; the move stands, recovery ends it."""

    message = ('Migration of volume %(volume)s stopped while removing its '
               'source: %(reason)s Its copy on %(dest)s is complete and '
               'verified; "rbdmig recover" finishes the move.')


def presence(drv, volume):
    """Return :data:`phases.PRESENT`, ``MISSING`` or ``UNKNOWN`` for
    ``volume`` on ``drv``."""
    try:
        drv.close_volume(None, volume, drv.open_volume(None, volume))
    except exception.VolumeNotFound:
        return phases.MISSING
    except Exception as err:
        LOG.warning('Cannot tell whether %(vol)s exists: %(err)s',
                    {'vol': volume.name, 'err': err})
        return phases.UNKNOWN
    return phases.PRESENT


def remove_source(drv, volume):
    """Remove the source; an already removed source is success."""
    faults.point('service.remove_source.before')
    drv.delete_volume(volume)
    faults.point('service.remove_source.after')


class Move(object):
    """One generic move of a migration record's volume.

    :param db: a :class:`rbdmig.db.api.API`.
    :param src: the source driver; ``dst``: the destination's.
    :param migration: the migration record; ``record``: its volume's.
    :param runner: the host running the move (the record's ``host``);
        every write to the record is made only while it holds.  None:
        any (tests, tools).
    """

    def __init__(self, db, src, dst, migration, record, runner=None):
        self.db, self.src, self.dst = db, src, dst
        self.migration = migration
        self.runner = runner
        self.volume = inventory.as_volume(record)
        self.record = record
        self.dest = None
        if migration.dest_volume_id:
            self.dest = db.get_volume(migration.dest_volume_id)

    @property
    def chunk(self):
        return self.src.configuration.safe_get('volume_copy_chunk_size')

    def start(self):
        """Record the destination, then create it; return 0."""
        self.dest = self.db.create_volume(
            self.migration.dest_backend, self.record.size_gib,
            name=self.record.name, status=states.CREATING, hidden=True)
        if not self.db.set_path(self.migration.id, states.GENERIC,
                                method=METHOD, dest_volume_id=self.dest.id,
                                runner=self.runner):
            self.db.delete_volume(self.dest.id)  # the record only
            raise self._lost()
        faults.point('service.generic')
        self._create()
        return 0

    def _create(self):
        """Create the destination and record that this move did: only an
        image it recorded creating is ever copied into on a resume."""
        self.dst.create_volume(inventory.as_volume(self.dest))
        self.db.compare_and_set_status(self.dest.id,
                                       {'status': states.CREATING},
                                       {'status': states.AVAILABLE})
        faults.point('service.dest_created')

    def reopen(self):
        """The recorded destination again: return the offset to copy from.

        A process killed before it created the destination left only its
        record: it is created now, and the copy starts from 0.  An image
        of that name the move did not record creating (killed between its
        creation and the record; or not its own at all: the source
        itself, where two backends share a pool, or another volume) is
        never copied into, nor removed.

        :raises MigrationError: such an image is there.
        """
        dest = inventory.as_volume(self.dest)
        if presence(self.dst, dest) == phases.MISSING:
            self._create()
            return 0
        if self.dest.status == states.CREATING:
            self.db.delete_volume(self.dest.id)  # the record only
            raise exception.MigrationError(
                volume=self.volume.id,
                reason='an image named %s is on %s that this migration '
                       'did not record creating it (the source itself, '
                       'another volume, or an empty copy made just before '
                       'it was killed, to remove by hand), so it was left '
                       'untouched and the source is intact.' % (
                           self.dest.name, self.migration.dest_backend))
        return migration_records.resume_offset(self.migration, self.dest.id,
                                               self.chunk)

    def copy(self, callback, start):
        """Copy from ``start``, verify, check no client has the source.

        :raises: whatever stopped it; the destination is then removed if
            the source is proven intact, and kept otherwise.
        """
        def checkpoint(offset):
            if not self.db.save_checkpoint(self.migration.id, offset,
                                           self.chunk, runner=self.runner):
                raise self._lost()  # stops the copy
            faults.point('service.checkpoint')

        dest = inventory.as_volume(self.dest)
        try:
            self.src.copy_volume_data(
                None, self.volume, dest, dest_driver=self.dst,
                callback=callback,
                dest_zeroed=self.dst.CREATES_ZEROED_VOLUMES,
                resume_from=start, checkpoint=checkpoint)
            self._verify(dest)
            faults.point('service.verified')
            if self.src.volume_in_use(self.volume):
                raise exception.MigrationError(
                    volume=self.volume.id,
                    reason='a client opened it during the copy and may have '
                           'written to it since, so the copy cannot replace '
                           'it; the source is intact.')
        except Exception as err:
            self._abandon('copying', err)
            raise

    def _lost(self):
        """The error of a runner whose move another host runs now."""
        now = self.db.get_migration(self.migration.id)
        if now.status in states.RUNNING:
            return exception.MigrationTakenOver(
                id=self.migration.id, holder=now.host, runner=self.runner)
        return exception.MigrationError(
            volume=self.volume.id,
            reason='its migration %s ended meanwhile (%s).' % (
                self.migration.id, now.status))

    def _verify(self, dest):
        compare.check_copy(self.src, self.volume, self.dst, dest)
        LOG.info('The copy of %(vol)s on %(dst)s reads as its source.',
                 {'vol': self.volume.id, 'dst': self.migration.dest_backend})

    def complete(self):
        """Remove the source of a verified copy; return the copy's name.

        :raises MigrationError: a client opened the source as it was
            removed (librbd refuses a busy image before removing
            anything): the copy was removed, the source is the volume.
        :raises Unfinished: removing the source failed otherwise; the
            record stays ``completing`` for recovery to finish.
        """
        self.db.advance_migration(self.migration.id, states.COMPLETING,
                                  runner=self.runner)
        faults.point('service.completing')
        try:
            remove_source(self.src, self.volume)
        except Exception as err:
            if self._in_use():
                # librbd refused a busy image before removing anything.
                reason = ('a client opened it as its source was being '
                          'removed; the copy is removed and the source '
                          'is intact.')
                self._abandon('removing its source', reason)
                raise Undone(volume=self.volume.id, reason=reason) from err
            LOG.exception('Removing the source of %s failed.',
                          self.volume.id)
            raise Unfinished(volume=self.volume.id, reason=err,
                             dest=self.migration.dest_backend) from err
        return self.dest.name

    def finish_forward(self):
        """Recovery of ``completing``: remove what remains of the source.

        The copy was verified before the record said ``completing``; it
        must still be there (it opens) before anything of the source
        goes.

        :returns: the copy's name, for the record's switch-over.
        :raises CopyMissing: the copy is missing, or cannot be told to
            be there: nothing changed.
        :raises: whatever removing the source raised; nothing changed.
        """
        found = presence(self.dst, inventory.as_volume(self.dest))
        if found != phases.PRESENT:
            raise CopyMissing(
                volume=self.volume.id,
                reason='its copy %s on %s is %s, so its source was left as '
                       'it is.' % (self.dest.name,
                                   self.migration.dest_backend, found))
        remove_source(self.src, self.volume)
        return self.dest.name

    def _in_use(self):
        try:
            return self.src.volume_in_use(self.volume)
        except Exception:
            return False

    def _abandon(self, when, err):
        """Record the move failed, then remove its copy if the source is
        there.

        The record ends first (``error``, only while this host runs the
        move): from then on no recovery finishes the move forward, and
        no other host resumes it, so the copy may go.  A record this
        host cannot end (another host took the move over, or it ended)
        leaves the copy alone: it may be the one its successor keeps.
        """
        try:
            self.db.finish_migration(self.migration.id, states.ERROR,
                                     error=str(err) or repr(err),
                                     runner=self.runner)
        except (exception.MigrationTakenOver, exception.InvalidTransition,
                exception.ConcurrentUpdate) as lost:
            LOG.error('Migrating %(vol)s failed while %(when)s, and its '
                      'record cannot be ended by this host (%(lost)s): its '
                      'copy %(copy)s on %(dst)s is left as it is.',
                      {'vol': self.volume.id, 'when': when, 'lost': lost,
                       'copy': self.dest.name,
                       'dst': self.migration.dest_backend})
            return
        faults.point('service.undoing')
        self._discard_if_source_intact(when)

    def _discard_if_source_intact(self, when):
        """Remove the destination, only while the source is there."""
        found = presence(self.src, self.volume)
        if found != phases.PRESENT:
            LOG.error('Migrating %(vol)s failed while %(when)s, and its '
                      'source is %(found)s: its copy %(copy)s on %(dst)s '
                      'is kept.',
                      {'when': when, 'vol': self.volume.id, 'found': found,
                       'copy': self.dest.name,
                       'dst': self.migration.dest_backend})
            return
        LOG.error('Migrating %(vol)s failed while %(when)s; removing its '
                  'copy, the source is intact.',
                  {'when': when, 'vol': self.volume.id})
        try:
            self.dst.delete_volume(inventory.as_volume(self.dest))
            self.db.delete_volume(self.dest.id)
        except Exception:
            LOG.exception('Could not remove the copy %s.', self.dest.id)
