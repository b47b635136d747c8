"""The migration service: checks, claims, moves and records volumes."""

import concurrent.futures as futures
import contextlib
import hashlib
import time

from oslo_log import log as logging

from rbdmig import exception
from rbdmig import faults
from rbdmig.db import migration_records
from rbdmig.migration import generic
from rbdmig.migration import inventory
from rbdmig.migration import lease as lease_mod
from rbdmig.migration import manager
from rbdmig.migration import notify
from rbdmig.migration import phases
from rbdmig.migration import progress
from rbdmig.migration import reporter
from rbdmig.migration import scheduler
from rbdmig.db import states

LOG = logging.getLogger(__name__)

GENERIC = 'generic'  # --method: skip the assisted move


class Stood(exception.MigrationError):
    """The driver moved the volume, but recording it failed."""

    message = ('Migration of volume %(volume)s: the volume is on %(dest)s '
               'now, but recording it failed: %(reason)s "rbdmig recover" '
               'records it.')


class Rejected(exception.RbdmigError):
    """A request refused before anything changed; the message says why."""

    message = 'Cannot migrate volume %(volume)s: %(reason)s'


class Service(inventory.Inventory):
    """Volumes and their migrations, on the configured backends.

    What cinder-volume and its scheduler do on ``cinder migrate``, for rbdmig
    on its own: every check first, each rejection one sentence that changes
    nothing; a claim by compare-and-set, so two processes never move one
    volume; the source driver's assisted move first, the generic copy
    second; progress recorded where any process reads it, logged and
    notified; and the outcome recorded, the reason with it.

    :param db: a :class:`rbdmig.db.api.API`.
    :param drivers: ``{backend: driver}``, set up.
    :param notifier: a :class:`rbdmig.migration.notify.Notifier`.
    :param host: who runs the migrations this service starts or takes
        over, in their records (``hostname:pid`` by default).
    :param lease: seconds a running migration's record may go without a
        heartbeat before recovery presumes its process dead
        (``migration_lease``).
    """

    def __init__(self, db, drivers, notifier=notify.NULL, host=None,
                 lease=lease_mod.LEASE):
        self.db, self.drivers, self.notifier = db, drivers, notifier
        self.host = host or migration_records.this_host()
        self.lease = lease

    # -- migrations -------------------------------------------------------

    def request(self, volume_id, dest_backend, force=False, method=None):
        """Check, then claim: return the new migration record.

        :raises Rejected: one sentence; nothing was changed.
        """
        def reject(reason):
            raise Rejected(volume=volume_id, reason=reason)

        try:
            record = self.db.get_volume(volume_id)
        except exception.VolumeNotFound:
            reject('no such volume.')
        if dest_backend not in self.drivers:
            reject('backend %s is not configured (enabled_backends: %s).'
                   % (dest_backend, ', '.join(sorted(self.drivers))))
        if record.backend == dest_backend:
            reject('it is on %s already.' % dest_backend)
        if states.is_running(record.migration_status):
            reject('a migration of it is running (%s).'
                   % record.migration_status)
        if record.status != states.AVAILABLE:
            reject('its status is %s; only an available volume moves '
                   '(detach it first).' % record.status)
        src, dst = self.drivers[record.backend], self.drivers[dest_backend]
        volume = inventory.as_volume(record)
        if src.volume_in_use(volume):
            reject('a client has it open on %s; close it first.'
                   % record.backend)
        self._check_method(src, method, reject)
        caps = dst.get_volume_stats(refresh=True)
        for why in (scheduler.room(caps, record.size_gib,
                                   src.allocated_bytes(volume)),
                    scheduler.capabilities(caps, record.extra_specs)):
            if why:
                reject(why)
        try:
            return self.db.start_migration(volume_id, dest_backend,
                                           host=self.host,
                                           force=force)
        except (exception.MigrationInProgress, exception.InvalidVolume,
                exception.ConcurrentUpdate) as err:
            reject(str(err))  # another process claimed it first

    def _check_method(self, src, method, reject):
        if method in (None, GENERIC):
            return
        known = src.get_volume_stats().get('rbd_migration_methods') or []
        if method not in known:
            reject('method %s is not one of %s.'
                   % (method, ', '.join(known + [GENERIC])))

    def migrate(self, volume_id, dest_backend, force=False, method=None,
                callback=progress.DEFAULT_CALLBACK):
        """:meth:`request`, then :meth:`run`, connecting once per cluster
        for both (:meth:`sharing`)."""
        with self.sharing():
            migration = self.request(volume_id, dest_backend, force, method)
            return self.run(migration.id, method, callback)

    def sharing(self):
        """A block in which every driver that can keeps one client per
        cluster: a migration's checks, the destination's stats and its
        move connected each on its own.  No client connects before a
        driver calls it."""
        return manager.sharing(*self.drivers.values())

    def run(self, migration_id, method=None,
            callback=progress.DEFAULT_CALLBACK, resume=False):
        """Move the volume of a claimed migration; return the record.

        The source driver's assisted move first (unless ``method`` is
        ``generic``), then the generic copy when the driver says it cannot
        do it here.  When the driver refuses because the volume is unsafe
        to copy now (:class:`~rbdmig.exception.MigrationRefused`: a client
        has it open, snapshots would be lost...) there is no generic copy:
        the migration ends there.  On failure the source is intact, the
        reason recorded, the volume's status restored, and the error
        raised.
        """
        with self.sharing():
            return self._run(migration_id, method, callback, resume)

    def _run(self, migration_id, method, callback, resume):
        migration = self.db.get_migration(migration_id)
        record = self.db.get_volume(migration.volume_id)
        src = self.drivers[migration.source_backend]
        dst = self.drivers[migration.dest_backend]
        volume = inventory.as_volume(record)
        rep = reporter.Reporter(
            'migration %s of %s' % (migration_id, record.id),
            src.configuration.safe_get(
                'migration_progress_report_interval') or 0,
            record=lambda done, total, rate, eta: self.db.update_progress(
                migration_id, done, total, rate, eta, runner=self.host),
            notifier=self.notifier,
            event=dict(volume_id=record.id,
                       source_backend=migration.source_backend,
                       destination_backend=migration.dest_backend,
                       method=method or src.configuration.safe_get(
                           'rbd_migration_method') or GENERIC))
        rep.set_size(record.size_gib << 30)
        both = progress.Fanout(rep, callback)
        # The host column fences this runner: once another host's
        # recovery takes the migration over, every write below fails.
        beat = lease_mod.Heartbeat(
            lambda: self.db.heartbeat(migration_id, runner=self.host),
            lease_mod.heartbeat_interval(self.lease))
        try:
            with beat, rep:
                if not resume:
                    # This process runs it now (``migrate`` may have
                    # claimed it in another one).
                    self.db.advance_migration(
                        migration_id, states.MIGRATING, bytes_total=rep.size,
                        host=self.host)
                    faults.point('service.migrating')
                moved = (not resume and method != GENERIC and
                         self._assisted(src, dst, volume, method, both))
                name = None
                if moved:
                    self._record_moved(migration_id, src,
                                       migration.dest_backend, volume)
                else:
                    move = generic.Move(self.db, src, dst, migration, record,
                                        runner=self.host)
                    start = move.reopen() if resume else move.start()
                    move.copy(both, start)
                    name = move.complete()
        except (generic.Unfinished, Stood):
            raise  # the record stays running: recovery finishes it
        except (generic.Undone, exception.MigrationTakenOver):
            raise  # the record says so already, or is another host's
        except BaseException as err:
            with contextlib.suppress(exception.RbdmigError):
                self.db.finish_migration(migration_id, states.ERROR,
                                         error=str(err) or repr(err),
                                         runner=self.host)
            raise
        # The volume is on the destination now: whatever happens next,
        # the record must never say error (recovery switches it over).
        return self._succeed(migration_id, name)

    def _succeed(self, migration_id, name):
        done = self.db.finish_migration(migration_id, states.SUCCESS,
                                        name=name, runner=self.host)
        faults.point('service.success')
        return done

    def _assisted(self, src, dst, volume, method, callback):
        """The source driver's move; True if it moved the volume.

        :raises MigrationRefused: unsafe to copy now by any path.
        """
        with _method_override(src, method):
            moved, _update = src.migrate_volume(
                None, volume, manager.destination_host(dst),
                callback=callback)
        return moved

    def _record_moved(self, migration_id, src, dest, volume):
        """Record that the driver moved the volume to ``dest``.

        The volume is there now, whatever happens: a failure here (the
        database, or another host's recovery holding the record) must
        never record the move failed, ``on the source``, where nothing is
        left.  The record stays running instead, and recovery, which
        finds the volume on the destination only, records the success.

        :raises Stood: recording failed.
        """
        try:
            self.db.set_path(migration_id, states.ASSISTED,
                             method=src.configuration.safe_get(
                                 'rbd_migration_method'), runner=self.host)
            faults.point('service.assisted')
            self.db.advance_migration(migration_id, states.COMPLETING,
                                      runner=self.host)
            faults.point('service.completing')
        except Exception as err:
            LOG.error('Migration %(mig)s moved %(vol)s to %(dest)s, but '
                      'recording it failed (%(err)s): it stays running '
                      'for "rbdmig recover" to record.',
                      {'mig': migration_id, 'vol': volume.name,
                       'dest': dest, 'err': err})
            raise Stood(volume=volume.name, dest=dest, reason=err) from err

    def drain(self, source, dest, parallel=2, report=None):
        """Move every volume of ``source`` to ``dest``, ``parallel`` at a
        time; ``report(volume_id, outcome)`` for each.

        Several hosts sharing one database may drain the same source at
        once: each volume is claimed by one of them (the database's
        claim), each walks the source in an order of its own, and a
        volume another host has moved, or is moving, is reported as such
        by the others, not as a failure.

        The source's and the destination's drivers keep one client per
        cluster (:func:`manager.sharing`) for the whole drain instead of
        one per check and move; every check still runs for every volume.

        :returns: the number of volumes that did not move.
        """
        with manager.sharing(self.driver(source), self.driver(dest)):
            return self._drain(source, dest, parallel, report)

    def _drain(self, source, dest, parallel, report):
        # Each host walks the source in an order of its own (a hash of
        # its host and the volume): walking one shared order, hosts
        # draining at once would check every volume together, and all
        # but one lose its claim, instead of each moving others.
        todo = sorted((r.id for r in self.db.list_volumes(backend=source)),
                      key=lambda v: hashlib.sha256(
                          ('%s/%s' % (self.host, v)).encode()).digest())

        def one(volume_id):
            start = time.monotonic()
            elsewhere = self._drained_elsewhere(volume_id, source)
            if elsewhere:
                return volume_id, True, elsewhere
            try:
                self.migrate(volume_id, dest)
            except exception.RbdmigError as err:
                # Another host may have claimed it, or moved it, since the
                # look above (a lost claim; its source gone mid-check).
                elsewhere = self._drained_elsewhere(volume_id, source)
                if elsewhere:
                    return volume_id, True, elsewhere
                return volume_id, False, str(err)
            return volume_id, True, 'moved in %.1f s' % (
                time.monotonic() - start)

        failed = 0
        with futures.ThreadPoolExecutor(max_workers=parallel) as pool:
            for volume_id, ok, what in pool.map(one, todo):
                failed += not ok
                if report is not None:
                    report(volume_id, what)
        return failed

    def _drained_elsewhere(self, volume_id, source):
        """What another drainer did with ``volume_id``, or None: it left
        ``source``, or a migration of it runs on another host."""
        record = self.db.get_volume(volume_id)
        if record.backend != source:
            return 'moved to %s by another host' % record.backend
        if states.is_running(record.migration_status):
            migration = self.db.latest_migration(volume_id)
            host = migration and migration.host
            if host != self.host:
                return 'being moved by %s' % (host or 'another host')
        return None

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
        record says which.
        :returns: ``[(migration id, outcome)]``.
        """
        done = []
        for migration in self.db.list_migrations(running=True):
            # Its process is gone (its pid here, its lease anywhere), and
            # no other recovery took it over first.
            if lease_mod.alive(migration, lease=self.lease) or not (
                    self.db.take_over(migration, host=self.host)):
                continue
            if migration.path == states.GENERIC and migration.dest_volume_id:
                with lease_mod.Heartbeat(
                        lambda: self.db.heartbeat(migration.id,
                                                  runner=self.host),
                        lease_mod.heartbeat_interval(self.lease)):
                    outcome = self._recover_generic(migration)
                done.append((migration.id, outcome))
                continue
            record = self.db.get_volume(migration.volume_id)
            pending = self._journaled(migration, record)
            if pending:
                done.append((migration.id, pending))
                continue
            done.append((migration.id, self._recover_assisted(migration,
                                                              record)))
        return done

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
            found = generic.presence(src, move.volume)
        decision = generic.decide(migration.status, found)
        where = migration.dest_backend
        if decision == phases.RESUME:
            offset = migration_records.resume_offset(
                migration, migration.dest_volume_id, move.chunk)
            try:
                self.run(migration.id, GENERIC, resume=True)
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


def _method_override(drv, method):
    """``rbd_migration_method`` set to ``method`` for one move."""
    if method in (None, GENERIC):
        return contextlib.nullcontext()
    return drv.configuration.override('rbd_migration_method', method)
