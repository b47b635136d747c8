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
from rbdmig.migration import recovery
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


class Service(inventory.Inventory, recovery.Recovery):
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
        # What the move reached, for an interrupt to be judged by.
        assisted = moved = False
        try:
            with beat, rep:
                if not resume:
                    # This process runs it now (``migrate`` may have
                    # claimed it in another one).
                    self.db.advance_migration(
                        migration_id, states.MIGRATING, bytes_total=rep.size,
                        host=self.host)
                    faults.point('service.migrating')
                assisted = not resume and method != GENERIC
                moved = assisted and self._assisted(src, dst, volume,
                                                    method, both)
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
            # A KeyboardInterrupt or SystemExit too, which no step above
            # turns into Stood or Unfinished: ending the record says the
            # volume is on its source, true only while the move cannot
            # have stood.
            if not isinstance(err, Exception) and self._may_have_stood(
                    migration_id, src, volume, assisted, moved):
                LOG.error('Migration %(mig)s of %(vol)s was interrupted '
                          '(%(err)r) once its volume may have left %(src)s: '
                          'it stays running for "rbdmig recover" to record '
                          'where the volume is.',
                          {'mig': migration_id, 'vol': record.id,
                           'err': err, 'src': migration.source_backend})
                raise
            with contextlib.suppress(exception.RbdmigError):
                self.db.finish_migration(migration_id, states.ERROR,
                                         error=str(err) or repr(err),
                                         runner=self.host)
            raise
        # The volume is on the destination now: whatever happens next,
        # the record must never say error (recovery switches it over).
        return self._succeed(migration_id, name)

    def _may_have_stood(self, migration_id, src, volume, assisted, moved):
        """Whether an interrupted move may have left its source.

        Only a move proven not to have gone that far is ended ``error``
        (its source is the volume): its record still running and not
        ``completing`` (a generic move removes its source only once its
        record says so), its source found under its name (not retired,
        nor removed), and, for an assisted move, the source pool's
        journal no longer holding it (while it does, Ceph's recovery
        finishes or undoes the move).  Any other stays running, and
        recovery decides from the record and what it finds.  Whatever
        cannot be told counts as may.
        """
        if moved:
            return True  # the driver moved it: recording was interrupted
        try:
            status = self.db.get_migration(migration_id).status
        except Exception as err:  # noqa: BLE001 - then nothing is known
            LOG.warning('Migration %(mig)s: its record cannot be read '
                        '(%(err)s).', {'mig': migration_id, 'err': err})
            return True
        if status == states.COMPLETING:
            return True
        if not states.is_running(status):
            return False  # ended by the move's own cleanup
        journaled = getattr(src, 'migration_journaled', None)
        try:
            if assisted and journaled is not None and journaled(volume):
                return True
        except Exception as err:  # noqa: BLE001 - then nothing is known
            LOG.warning('Migration %(mig)s: the journal of its source '
                        'cannot be read (%(err)s).',
                        {'mig': migration_id, 'err': err})
            return True
        return generic.presence(src, volume) != phases.PRESENT

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
        by the others, not as a failure.  A migration whose process is
        gone (a drain killed, then run again) moves nothing: it is
        recovered first, as ``rbdmig recover`` would, and its volume
        moved if it is still on the source (or counted not moved, the
        report saying why, when its recovery left it running).

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
            recovered = self._recover_dead_run(volume_id)
            if recovered:
                record = self.db.get_volume(volume_id)
                if record.backend != source:
                    return volume_id, True, recovered
                if states.is_running(record.migration_status):
                    return volume_id, False, '%s; it did not move' % (
                        recovered)
                # Ended, its source intact: the drain moves it now.
            try:
                self.migrate(volume_id, dest)
            except exception.RbdmigError as err:
                # Another host may have claimed it, or moved it, since the
                # look above (a lost claim; its source gone mid-check).
                elsewhere = self._drained_elsewhere(volume_id, source)
                if elsewhere:
                    return volume_id, True, elsewhere
                return volume_id, False, str(err)
            return volume_id, True, 'moved in %.1f s%s' % (
                time.monotonic() - start,
                ' (%s)' % recovered if recovered else '')

        failed = 0
        with futures.ThreadPoolExecutor(max_workers=parallel) as pool:
            for volume_id, ok, what in pool.map(one, todo):
                failed += not ok
                if report is not None:
                    report(volume_id, what)
        return failed

    def _drained_elsewhere(self, volume_id, source):
        """What another drainer did with ``volume_id``, or None: it left
        ``source``, or a migration of it runs in another live process.

        A migration whose process is gone (a drain killed and run again
        on this host: its pid is gone; another host's whose lease
        lapsed) is not being moved by anyone: counted drained, the drain
        would say every volume moved while this one stays on the source
        (:meth:`_recover_dead_run` takes it instead).
        """
        record = self.db.get_volume(volume_id)
        if record.backend != source:
            return 'moved to %s by another host' % record.backend
        if states.is_running(record.migration_status):
            migration = self.db.latest_migration(volume_id)
            if migration is None:
                return None  # nothing to go by: the claim below decides
            if migration.host != self.host and lease_mod.alive(
                    migration, lease=self.lease):
                return 'being moved by %s' % (migration.host or
                                              'another host')
        return None

    def _recover_dead_run(self, volume_id):
        """Recover the migration of ``volume_id`` that a dead process
        left running; return what became of it, in words, or None when
        there is none.

        The recovery is ``rbdmig recover``'s (:meth:`recover_one`): it
        moved the volume, or ended with its source intact (the drain
        then moves it), or left the migration running (the drain counts
        the volume not moved, and says why).
        """
        record = self.db.get_volume(volume_id)
        if not states.is_running(record.migration_status):
            return None
        migration = self.db.latest_migration(volume_id)
        if migration is None or lease_mod.alive(migration, lease=self.lease):
            return None
        found = self.recover_one(migration)
        what = found.outcome if found else 'another recovery took it over'
        LOG.warning('Volume %(vol)s: its migration %(mig)s was left running '
                    'by %(host)s, whose process is gone; recovered: '
                    '%(what)s.', {'vol': volume_id, 'mig': migration.id,
                                  'host': migration.host, 'what': what})
        return ('its migration %d was left running by %s, whose process is '
                'gone; recovered: %s' % (migration.id, migration.host, what))


def _method_override(drv, method):
    """``rbd_migration_method`` set to ``method`` for one move."""
    if method in (None, GENERIC):
        return contextlib.nullcontext()
    return drv.configuration.override('rbd_migration_method', method)
