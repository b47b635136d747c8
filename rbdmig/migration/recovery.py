"""Recovery of the migrations a dead process left running."""

import typing

from oslo_log import log as logging

from rbdmig import exception
from rbdmig.db import migration_records
from rbdmig.db import states
from rbdmig.migration import generic
from rbdmig.migration import inventory
from rbdmig.migration import lease as lease_mod
from rbdmig.migration import phases

LOG = logging.getLogger(__name__)

# The outcome of a migration whose recovery raised begins so.
FAILED = 'recovery failed: '


class Recovered(typing.NamedTuple):
    """What recovery did with one migration, in words."""

    migration_id: int
    outcome: str

    @property
    def failed(self):
        """Whether its recovery raised (the next recovery tries again
        what is left running)."""
        return self.outcome.startswith(FAILED)


class Recovery(object):
    """Takes over and ends the migrations whose process is gone.

    Needs ``self.db``, ``self.drivers``, ``self.host``, ``self.lease``,
    ``self.run`` (resuming a generic copy) and ``self._succeed``
    (recording a move done): the migration service mixes it in.
    """

    def recover(self):
        """Resume or close the migrations a dead process left running.

        A migration is taken over once its process is gone: its pid on
        this host, its lease (:mod:`lease`) on any host, so a move a dead
        host left is recovered from another sharing the database.
        A generic move is decided from its status and whether its source
        exists (:data:`phases.GENERIC_TABLE`): a copy resumes from its last
        checkpoint while its source is there; once ``completing``, its
        verified copy is the volume and the move is finished forward,
        never copied again.  An assisted move was already finished or
        undone in Ceph by the drivers' own recovery (their set-up): the
        record says which.  Each is recovered on its own
        (:meth:`recover_one`): one that fails never stops the others.

        :returns: a :class:`Recovered` ``(migration id, outcome)`` for
            each migration taken over.
        """
        done = []
        for migration in self.db.list_migrations(running=True):
            outcome = self.recover_one(migration)
            if outcome is not None:
                done.append(outcome)
        return done

    def recover_one(self, migration):
        """Recover ``migration`` (a record as read) if its process is gone.

        What its recovery raises is logged and said in its outcome
        (then :attr:`Recovered.failed`), never raised: the record is
        left as the failure left it (running, this process's, unless it
        ended first), for the next recovery to try again once this
        process is gone (or its lease lapsed).

        :returns: a :class:`Recovered`, or None when its process may
            still run or another recovery took it over first.
        """
        # Its process is gone (its pid here, its lease anywhere), and
        # no other recovery took it over first.
        if lease_mod.alive(migration, lease=self.lease) or not (
                self.db.take_over(migration, host=self.host)):
            return None
        try:
            outcome = self._recover(migration)
        except Exception as err:  # noqa: BLE001 - logged, then reported
            LOG.exception('Recovering migration %(mig)s of %(vol)s failed; '
                          'what is left running, the next "rbdmig recover" '
                          'tries again.',
                          {'mig': migration.id, 'vol': migration.volume_id})
            outcome = '%s%s; recover again' % (FAILED,
                                                str(err) or repr(err))
        return Recovered(migration.id, outcome)

    def _recover(self, migration):
        if migration.path == states.GENERIC and migration.dest_volume_id:
            with lease_mod.Heartbeat(
                    lambda: self.db.heartbeat(migration.id,
                                              runner=self.host),
                    lease_mod.heartbeat_interval(self.lease)):
                return self._recover_generic(migration)
        record = self.db.get_volume(migration.volume_id)
        return (self._journaled(migration, record) or
                self._recover_assisted(migration, record))

    def _recover_assisted(self, migration, record):
        """Record where a dead assisted move left the volume.

        Ceph's recovery has finished or undone the move (the journal no
        longer holds it): the volume is where it is found.  On the
        destination only, the move stood.  Where the source still is,
        the source is the volume: an image of its name on the
        destination is then not this move's (the engine never leaves
        both), and is left alone.
        """
        source = generic.presence(self.drivers[migration.source_backend],
                                  inventory.as_volume(record))
        if source == phases.UNKNOWN:
            return ('left as it is: whether its source exists cannot be '
                    'told now; recover again')
        on_dest = (migration.status in (states.MIGRATING, states.COMPLETING)
                   and self._holds(migration.dest_backend, record))
        if on_dest and source == phases.MISSING:
            # The driver moved it (its own recovery finished the move).
            if migration.status == states.MIGRATING:
                self.db.advance_migration(migration.id, states.COMPLETING,
                                          runner=self.host)
            self.db.finish_migration(migration.id, states.SUCCESS,
                                     runner=self.host)
            return 'completed on %s' % migration.dest_backend
        if source == phases.MISSING:
            self.db.finish_migration(
                migration.id, states.ERROR, runner=self.host,
                error='its process died, and the volume is neither on its '
                      'source nor on %s.' % migration.dest_backend)
            return 'ended: the volume is on neither backend'
        also = (' (an image of its name on %s is not its copy, and was left '
                'alone)' % migration.dest_backend) if on_dest else ''
        self.db.finish_migration(
            migration.id, states.ERROR, runner=self.host,
            error='its process died; the source is intact%s.' % also)
        return 'ended: the source is intact%s' % also

    def _recover_generic(self, migration):
        """Carry out :func:`generic.decide` for a dead generic move."""
        record = self.db.get_volume(migration.volume_id)
        src = self.drivers[migration.source_backend]
        move = generic.Move(self.db, src, self.drivers[
            migration.dest_backend], migration, record)
        found = phases.UNKNOWN
        if migration.status == states.MIGRATING:
            # A source its runner left retired gets its name back first.
            found = move.source_presence()
        decision = generic.decide(migration.status, found)
        where = migration.dest_backend
        if decision == phases.RESUME:
            offset = migration_records.resume_offset(
                migration, migration.dest_volume_id, move.chunk)
            try:
                self.run(migration.id, generic.METHOD, resume=True)
            except Exception as err:
                return 'resumed at %.1f MiB, and failed: %s' % (
                    offset / (1 << 20), err)
            return 'resumed at %.1f MiB and completed' % (offset / (1 << 20))
        if decision == phases.COMPLETE:
            try:
                name = move.finish_forward()
            except generic.CopyMissing as err:
                LOG.error('Migration %(mig)s: %(err)s It stays completing: '
                          'find its copy, or end it by hand.',
                          {'mig': migration.id, 'err': err})
                return 'left completing: %s' % err
            except generic.Undone as err:
                return 'ended: %s' % err.kwargs['reason']
            except Exception as err:
                LOG.warning('Migration %(mig)s: removing its source failed '
                            '(%(err)s); it stays completing.',
                            {'mig': migration.id, 'err': err})
                return ('left completing: its copy on %s is complete, but '
                        'removing the source failed (%s); recover again'
                        % (where, err))
            self._succeed(migration.id, name)
            return 'completed on %s (the source was removed)' % where
        if decision == phases.KEEP:
            self.db.finish_migration(
                migration.id, states.ERROR,
                error='its process died and its source is missing; its copy '
                      '%s on %s was kept.' % (move.dest.name, where))
            return 'ended: the source is missing, its copy on %s was kept' % (
                where)
        return ('left as it is: whether its source exists cannot be told '
                'now; recover again')

    def _journaled(self, migration, record):
        """Why an assisted move must be left as it is, or None.

        Its source driver is set up first (Ceph's recovery of its pool
        runs then, ``rbdmig recover --backend DEST`` included).  While
        the source pool's journal still holds the move (its process
        alive as Ceph sees it, or a record its recovery kept), Ceph's
        recovery decides where the volume ends: an image under its name
        on the destination may be a copy that recovery still undoes
        (``live``'s prepared target, a copy placed before the source was
        being removed).  Read nothing into it then.
        """
        try:
            src = self.drivers[migration.source_backend]
            journaled = getattr(src, 'migration_journaled', None)
            if journaled is None or not journaled(
                    inventory.as_volume(record)):
                return None
            why = 'its move is still in the journal of %s' % (
                migration.source_backend)
        except Exception as err:  # noqa: BLE001 - then nothing is known
            why = 'the journal of %s cannot be read (%s)' % (
                migration.source_backend, err)
        LOG.warning('Migration %(mig)s: left as it is: %(why)s.',
                    {'mig': migration.id, 'why': why})
        return 'left as it is: %s; recover again' % why

    def _holds(self, backend, record):
        drv = self.drivers[backend]
        try:
            volume = inventory.as_volume(record)
            drv.close_volume(None, volume, drv.open_volume(None, volume))
        except exception.VolumeNotFound:
            return False
        return True
