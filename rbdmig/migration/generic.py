"""The service's generic move: persisted steps, and recovery's decisions.

A generic move copies a volume through this host into a new, hidden
destination volume.  Each step is recorded before its action, and the
record alone tells recovery what may be done:

``migrating``, path ``generic`` (phase ``copying``)
    Before anything is built, a source the copy would not hold whole
    (snapshots or clones, an image larger than its record) is refused
    (:func:`fence.check_whole`).  The destination is recorded (then
    created) and being copied; the checkpoint says how much of it is
    complete.  The source is the volume.  Once copied, the source is
    renamed to its retired name (:class:`fence.Source`), out of every
    client's reach, and checked a last time there: no client holds it,
    no snapshot appeared, and the copy reads as it does.  Any failure,
    or recovery, gives it its name back first: until ``completing`` is
    recorded, the source is the volume, under its name or its retired
    one.
``completing`` (phase ``removing``)
    The destination is complete and verified against the retired
    source, which no client can have written since: the source is being
    removed.  From here the destination is the volume; the source may
    be partly removed.
``success``
    The record names the destination.

A destination is deleted only while the source is proven to exist (it
opens), never on an error that may say the source is gone, and only once
the record says the move failed (``error``): a record still saying
``completing`` while its copy goes would have recovery remove the
source.  Every write names the host running the move (the record's
``host``, the fencing token): a runner whose lease lapsed and whose move
another host's recovery took over can change nothing more, neither the
record nor the copy, nor the source's name.  Recovery's decisions are
:data:`rbdmig.migration.phases.GENERIC_TABLE`'s.
"""


from oslo_log import log as logging

from rbdmig import exception
from rbdmig import faults
from rbdmig.db import migration_records
from rbdmig.migration import fence
from rbdmig.migration import inventory
from rbdmig.migration import phases
from rbdmig.db import states

LOG = logging.getLogger(__name__)

METHOD = 'generic'

# The service's statuses of a generic move, as the phases recovery
# decides on (:data:`phases.GENERIC_TABLE`).
GENERIC_PHASES = {states.MIGRATING: phases.COPYING,
                  states.COMPLETING: phases.REMOVING}

# What stops a move here and now, with its cleanup run: any error, and
# Ctrl-C or sys.exit() (a SIGTERM handler's), which end this process in
# order.  The service records them as ``error``, and what it ended
# recovery never revisits: a copy or a retired source left by one would
# be in no running record, and the copy would refuse every later move.
# A kill runs nothing, and recovery resumes the move; any other
# BaseException is left as a kill leaves it (the unit tests kill with
# one).
STOPS = (Exception, KeyboardInterrupt, SystemExit)

presence = fence.presence


def decide(status, source):
    """Return what recovery does with a generic move in ``status``, its
    source found :data:`phases.PRESENT`, ``MISSING`` or ``UNKNOWN``."""
    return phases.decide_generic(GENERIC_PHASES[status], source)


class Undone(exception.MigrationError):
    """The move failed and its record says so already (``error``)."""


class CopyMissing(exception.MigrationError):
    """Recovery found no copy to finish a move forward with."""


class Unfinished(exception.MigrationError):
    """The source's removal failed; the move stands, recovery ends it.

    The service leaves the record running on it (and its subclass), for
    recovery to carry on.
    """

    message = ('Migration of volume %(volume)s stopped while removing its '
               'source: %(reason)s Its copy on %(dest)s is complete and '
               'verified; "rbdmig recover" finishes the move.')


class Unreturned(Unfinished):
    """The retired source could not get its name back; the record stays
    ``migrating``, and recovery gives it back."""

    message = ('Migration of volume %(volume)s failed: %(reason)s, and its '
               'source could not get its name back (%(why)s): it is whole '
               'as %(retired)s on %(source)s, where "rbdmig recover" gives '
               'it its name back.')


def _why(err):
    """An error's reason, without its class's sentence around it."""
    reason = str(getattr(err, 'kwargs', {}).get('reason') or err)
    return reason.rstrip('.') or repr(err)


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
        # Its retired name is the migration's: a recovery finds it.
        self.source = fence.Source(src, self.volume,
                                   '%s-%s' % (METHOD, migration.id))
        self.retired = self.source.retired
        self.dest = None
        self.created = False
        if migration.dest_volume_id:
            self.dest = db.get_volume(migration.dest_volume_id)

    @property
    def chunk(self):
        return self.src.configuration.safe_get('volume_copy_chunk_size')

    def start(self):
        """Check the source, record the destination, create it; return 0.

        :raises MigrationRefused: the source is not one a copy holds
            whole (:func:`fence.check_whole`); nothing was built.
        """
        fence.check_whole(self.src, self.volume)
        self.dest = self.db.create_volume(
            self.migration.dest_backend, self.record.size_gib,
            name=self.record.name, status=states.CREATING, hidden=True)
        if not self.db.set_path(self.migration.id, states.GENERIC,
                                method=METHOD, dest_volume_id=self.dest.id,
                                runner=self.runner):
            self.db.delete_volume(self.dest.id)  # the record only
            raise self._lost()
        try:
            faults.point('service.generic')
            self._create()
        except STOPS as err:
            # The hidden record holds the volume's name on the
            # destination: left behind, it refuses every later move.
            self._abandon('creating its copy', err)
            raise
        return 0

    def _create(self):
        """Create the destination and record that this move did: only an
        image it recorded creating is ever copied into on a resume."""
        self.dst.create_volume(inventory.as_volume(self.dest))
        self.created = True  # this process made it, whatever the record
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
        never copied into, nor removed.  The copy's driver breaks the
        locks the gone runner held on it, if it has any
        (``fence_writers``), so its writes wait for no lapsing watch and
        the runner, were it not gone, could write to it no more; if that
        fails, the copy resumes all the same, librbd waiting for the
        runner's watch to lapse.

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
        # Its runner is gone (recovery took the move over): whatever lock
        # it held on the copy is broken, and it is fenced, before a write.
        try:
            self.dst.fence_writers(dest)
        except Exception as err:  # noqa: BLE001 - librbd waits instead
            LOG.warning('Could not break the locks on %(name)s (%(err)s): '
                        'the copy resumes once Ceph has dropped its gone '
                        'runner\'s watch (30 s at most).',
                        {'name': dest.name, 'err': err})
        return migration_records.resume_offset(self.migration, self.dest.id,
                                               self.chunk)

    def copy(self, callback, start):
        """Copy from ``start``; check no client opened the source.

        The copy is verified by :meth:`complete`, once no client can
        change the source any more.

        :raises: whatever stopped it (:data:`STOPS`); the destination is
            then removed if the source is proven intact, and kept
            otherwise.
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
            # Early, before the source is renamed under a client.
            if self.src.volume_in_use(self.volume):
                raise exception.MigrationError(
                    volume=self.volume.id,
                    reason='a client opened it during the copy and may have '
                           'written to it since, so the copy cannot replace '
                           'it; the source is intact.')
            faults.point('service.copied')
        except STOPS as err:
            # Ctrl-C too: left, the partial copy and its hidden record
            # would refuse every later move under the volume's name.
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

    def complete(self):
        """Retire the source, verify the copy, remove the source; return
        the copy's name.

        Between a check of the source and its removal, a client could
        open it, write and close it again, leaving no trace but its
        data.  So the source is renamed out of clients' reach first,
        then checked (no client holds it, no snapshot appeared) and
        compared with the copy, and only then is ``completing`` recorded
        and the source removed: nothing written to it is lost.

        :raises MigrationError: a client held the source, or the copy
            does not read as it does (CopyError): the source got its name
            back, the copy was removed.  Or a client opened the source as
            it was removed (librbd refuses a busy image before removing
            anything): the same.
        :raises Unreturned: the source could not get its name back; the
            record stays ``migrating`` for recovery to give it back.
        :raises Unfinished: removing the source failed otherwise; the
            record stays ``completing`` for recovery to finish.
        """
        self._retire()
        try:
            faults.point('service.retired')
            self.source.check(self.dst, inventory.as_volume(self.dest))
            LOG.info('The copy of %(vol)s on %(dst)s reads as its retired '
                     'source.', {'vol': self.volume.id,
                                 'dst': self.migration.dest_backend})
            faults.point('service.verified')
            self.db.advance_migration(self.migration.id, states.COMPLETING,
                                      runner=self.runner)
        except STOPS as err:
            self._return_source('checking its retired source', err)
            raise
        faults.point('service.completing')
        try:
            remove_source(self.src, self.retired)
        except Exception as err:
            if self._in_use():
                # librbd refused a busy image before removing anything.
                reason = ('a client opened it as its source was being '
                          'removed; the copy is removed and the source '
                          'is intact.')
                self._return_source('removing its source', reason)
                raise Undone(volume=self.volume.id, reason=reason) from err
            LOG.exception('Removing the source of %s failed.',
                          self.volume.id)
            raise Unfinished(volume=self.volume.id, reason=err,
                             dest=self.migration.dest_backend) from err
        return self.dest.name

    def _retire(self):
        """Rename the source to its retired name, while this host runs
        the move; on failure, undo the move (its name given back if the
        rename happened after all)."""
        if not self.db.heartbeat(self.migration.id, runner=self.runner):
            raise self._lost()
        try:
            self.source.retire()
        except STOPS as err:
            self._return_source('retiring its source', err)
            raise

    def _return_source(self, when, err):
        """Give the retired source its name back, then undo the move
        (:meth:`_abandon`: its copy goes if the source is there).

        Only while no other host runs the move: a successor that took it
        over gives the source back itself, or has retired it anew under
        the same name.

        :raises MigrationTakenOver: another host runs the move now;
            nothing was touched.
        :raises Unreturned: the name could not be given back; the record
            stays running for recovery.
        """
        if not self._source_is_ours():
            raise self._lost()
        try:
            self.source.give_back()
            faults.point('service.given_back')
        except Exception as back:
            LOG.exception('Could not give %(vol)s its name back (it is '
                          'whole as %(retired)s on %(src)s); "rbdmig '
                          'recover" will.',
                          {'vol': self.volume.name,
                           'retired': self.retired.name,
                           'src': self.migration.source_backend})
            raise Unreturned(volume=self.volume.id, reason=_why(err),
                             why=back, retired=self.retired.name,
                             source=self.migration.source_backend) from back
        self._abandon(when, err)

    def _source_is_ours(self):
        """Whether this host may touch the source: it runs the move, or
        the record ended (then no one else gives a retired source back).
        """
        if self.db.heartbeat(self.migration.id, runner=self.runner):
            return True
        return self.db.get_migration(
            self.migration.id).status not in states.RUNNING

    def source_presence(self):
        """Recovery of ``migrating``: :func:`presence` of the source, once
        a retired one (its runner died with it renamed) got its name back
        (:meth:`fence.Source.found`)."""
        return self.source.found()

    def finish_forward(self):
        """Recovery of ``completing``: remove what remains of the source.

        The copy was verified against the retired source before the
        record said ``completing``; it must still be there (it opens)
        before anything of the source goes.  Only the retired source is
        removed: one under the volume's name again was given back (a
        client opened it as it was being removed, and its runner died
        undoing the move), or is not the source at all; the record then
        ends ``error``, and both are kept.

        :returns: the copy's name, for the record's switch-over.
        :raises CopyMissing: the copy is missing, or cannot be told to
            be there: nothing changed.
        :raises Undone: the source is under its name, not retired; the
            record says ``error`` now, nothing was removed.
        :raises: whatever removing the source raised; nothing changed.
        """
        found = presence(self.dst, inventory.as_volume(self.dest))
        if found != phases.PRESENT:
            raise CopyMissing(
                volume=self.volume.id,
                reason='its copy %s on %s is %s, so its source was left as '
                       'it is%s.' % (
                           self.dest.name, self.migration.dest_backend,
                           found, self.source.give_back_alone()
                           if found == phases.MISSING else ''))
        if self.source.given_back():
            reason = ('its source is under its name on %s, not under its '
                      'retired name %s (given back as a client opened it, '
                      'or by an earlier rbdmig), so it was kept as the '
                      'volume; its copy %s on %s was kept too: "rbdmig '
                      'delete %s" removes it.' % (
                          self.migration.source_backend, self.retired.name,
                          self.dest.name, self.migration.dest_backend,
                          self.dest.id))
            self.db.finish_migration(self.migration.id, states.ERROR,
                                     error=reason, runner=self.runner)
            raise Undone(volume=self.volume.id, reason=reason)
        # Its runner is gone: a lock it left removing the source is not
        # worth waiting for.
        self.source.cut_off_remover()
        remove_source(self.src, self.retired)
        return self.dest.name

    def _in_use(self):
        """Whether a client holds the retired source (False if unknown)."""
        try:
            return self.src.volume_in_use(self.retired)
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
        try:
            recorded = self.db.get_volume(self.dest.id).status
        except exception.VolumeNotFound:
            return  # removed already
        if recorded == states.CREATING and not self.created:
            # Not known to be this move's image (one of its name may have
            # been there: create_volume refused it): forget the record
            # only, as reopen() does.
            LOG.error('Migrating %(vol)s failed while %(when)s, before its '
                      'copy was known created; the source is intact.',
                      {'when': when, 'vol': self.volume.id})
            self.db.delete_volume(self.dest.id)
            return
        LOG.error('Migrating %(vol)s failed while %(when)s; removing its '
                  'copy, the source is intact.',
                  {'when': when, 'vol': self.volume.id})
        try:
            self.dst.delete_volume(inventory.as_volume(self.dest))
            self.db.delete_volume(self.dest.id)
        except Exception:
            LOG.exception('Could not remove the copy %s.', self.dest.id)
