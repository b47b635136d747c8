"""Assisted migration of one image: check, journal, copy, verify, place."""

import contextlib
import dataclasses
import time

from oslo_log import log as logging
from oslo_utils import units

from rbdmig import exception
from rbdmig import faults
from rbdmig import native
from rbdmig.ceph import checks
from rbdmig.ceph import connection
from rbdmig.ceph import images
from rbdmig.ceph import journal
from rbdmig.ceph import liveness
from rbdmig.ceph import undo
from rbdmig.ceph import verify
from rbdmig.ceph.methods import base
from rbdmig.migration import progress

LOG = logging.getLogger(__name__)


class _Unverified(Exception):
    """The copy differs from the source (its cause says how)."""


class _InUse(Exception):
    """Another client uses the source (the message says how)."""


def migrate(backend, volume, host, callback=progress.DEFAULT_CALLBACK,
            authority=None):
    """Move ``volume``'s image to the pool ``host`` names, keeping its name.

    Within one cluster by ``backend.method``; into another cluster, when
    this host reaches it through the conf in the destination's
    ``location_info``, by the ``extents`` method.

    :param backend: the source :class:`rbdmig.ceph.backend.Backend`.
    :param host: ``{'host': ..., 'capabilities': <destination stats>}``.
    :param callback: a :class:`rbdmig.migration.progress.Callback`, called
        on this thread; it may cancel by raising.
    :param authority: what names the volume (a
        :class:`rbdmig.ceph.recover.Authority`), told once the copy holds
        the volume's name and before the source goes, so that it names
        the copy from then on (Cinder's volume row).
    :returns: ``(moved, model_update)``: ``(True, None)`` once the image is
        in the destination pool and the source is gone, ``(False, None)``
        when it cannot be done here (:class:`checks.Refusal`: nothing was
        changed, and the caller may copy it generically).
    :raises MigrationRefused: it is unsafe to copy now by any path
        (:class:`checks.Unsafe`: a client has it open, snapshots or
        clones would be lost, its name is taken in the destination);
        nothing was changed, and no fallback copy may follow.
    :raises MigrationError: the copy failed; the message says where the
        source is: intact under its name, what the move built removed or
        left to ``rbdmig recover``, or, when giving it back failed,
        under its retired name until recovery finishes the move.
    """
    try:
        dest = checks.destination(volume, host)
        with contextlib.ExitStack() as stack:
            backend = _sharing(backend, stack)
            client, fsid, src_ioctx = checks.connect_source(backend, stack)
            dst_client, dst_ioctx = checks.connect_destination(
                backend, stack, dest)
            other = fsid != dest.fsid
            if not other and dest.pool == backend.pool:
                LOG.info('%s is already in pool %s of this cluster; only '
                         'its host changes.', volume.name, dest.pool)
                return True, None
            if volume.status == 'in-use' or volume.volume_attachment:
                raise checks.Refusal('it is attached, and an attached '
                                     'volume cannot change pools.')
            method = checks.choose_method(backend, other)
            source = checks.inspect_source(backend, src_ioctx, volume.name)
            method = checks.substitute(method, source, backend)
            method = checks.method_for_snapshots(method, source, other)
            checks.check_name_free(backend, dst_ioctx, volume.name, dest)
            checks.check_room(dst_client, dest.pool, source, volume)
            where = 'pool %s' % dest.pool
            if other:
                where += ' of cluster %s' % dest.fsid
            migration = _Migration(backend, method, volume, source, where,
                                   client, src_ioctx, dst_ioctx, dest)
            migration.authority = authority
            migration.record.clients = {
                'source': client.get_instance_id(),
                'dest': dst_client.get_instance_id()}
            if isinstance(host.get('host'), str):
                migration.record.dest_host = host['host']
            if isinstance(getattr(volume, 'host', None), str):
                # Under Cinder, the row's host as it names the source: a
                # recovery of an undone move puts the row back to it.
                migration.record.source_host = volume.host
            if authority is not None:
                migration.record.service = authority.service
            migration.run(callback)
    except checks.Unsafe as why:
        LOG.warning('Not migrating %(vol)s: %(why)s The source is intact; '
                    'no generic copy follows.',
                    {'vol': volume.id, 'why': why})
        raise exception.MigrationRefused(volume=volume.id, reason=str(why))
    except checks.Refusal as why:
        LOG.info('Not migrating %(vol)s with the backend: %(why)s Falling '
                 'back to generic migration.',
                 {'vol': volume.id, 'why': why})
        return False, None
    return True, None


def _sharing(backend, stack):
    """``backend`` with one client per cluster for the whole move.

    The source's and the destination's pools are most often in one
    cluster, reached by one conf and user: one client serves both
    (connecting is a good part of a small move's fixed cost).  A drain's
    backend shares its clients already; else they end with ``stack``.
    """
    if backend.shared is not None:
        return backend
    shared = connection.Shared()
    stack.callback(shared.close)
    return dataclasses.replace(backend, shared=shared)


class _Migration(undo.Undo):
    """One move, from its journal claim to its journal's end.

    Each phase (:mod:`rbdmig.migration.phases`) is journaled before its
    action, and the order keeps one complete copy at every instant:

    1. every check that can refuse, before anything changes;
    2. ``claimed``: the journal claims the image (:mod:`journal`);
    3. ``copying``: the copy is built under the migration's own name while
       the source is held open and, where it has the feature, locked
       exclusively: from here until the source is renamed away no other
       client writes to it (librbd fails their writes with EROFS, so no
       write is acknowledged and lost);
    4. ``verified``: the copy matched the source (``migration_verify``);
    5. ``retiring``: the source, still locked, is renamed to its retired
       name, out of every client's reach; a client that holds it open, a
       clone of one of its snapshots, or (without exclusive-lock) data
       that changed since the copy undoes the move, the source whole;
    6. ``placed``: the copy takes the image's name (never over another),
       which no client could reach before: from here the move stands;
    7. ``removing``: the retired source is stripped of its snapshots and
       removed, the copy untagged and the journal closed.

    Any failure before 6 undoes what was built and leaves the source
    whole, and an authority told the copy held the name is told the
    source holds it again before the journal closes; a failure in 7
    leaves the journal open at ``removing``, from which recovery
    (:mod:`rbdmig.ceph.recover`) only ever goes forward.  Once the
    source is removed the move stands: closing the journal cannot fail
    it.  This class is the forward path; undoing, and saying where the
    source is, is :class:`rbdmig.ceph.undo.Undo`'s.
    """

    authority = None  # told when the copy took the name (migrate())
    told = False  # whether the authority was told (moved() was called)
    retired = False  # whether the source is under its retired name

    def __init__(self, backend, method, volume, source, where, client,
                 src_ioctx, dst_ioctx, dest):
        self.backend, self.method, self.volume = backend, method, volume
        self.source, self.where, self.client = source, where, client
        self.rbd = backend.native_rbd
        self.journal = journal.Journal(backend.rados, src_ioctx)
        self.record = journal.Record.new(
            volume.name, method.name, backend.pool, dest._asdict(),
            live=not method.uses_source_handle)
        self.record.volume_id = volume.id
        self.move = base.Move(self.rbd, src_ioctx, dst_ioctx, volume.name,
                              self.record.temp, source.size,
                              self.record.id, src_pool=backend.pool,
                              dst_pool=dest.pool,
                              cluster=backend.cluster_spec(),
                              retired=self.record.retired,
                              dst_cluster=backend.cluster_spec(
                                  checks.destination_address(backend, dest)))

    def run(self, callback):
        with journal.running(self.record):
            self._run(callback)

    def _run(self, callback):
        try:
            self.journal.claim(self.record)
        except exception.MigrationInProgress as err:
            raise checks.Unsafe(str(err))
        # Any host's recovery leaves the record alone while this watch
        # lasts: while this process runs (rbdmig.ceph.liveness).
        with liveness.watching(self.move.src_ioctx, self.journal.oid(
                self.record)):
            self._run_claimed(callback)

    def _run_claimed(self, callback):
        name = self.move.name
        LOG.info('Migrating %(name)s (%(size).1f GiB) to %(where)s by '
                 '%(method)s (migration %(id)s).',
                 {'name': name, 'size': self.source.size / units.Gi,
                  'where': self.where, 'method': self.method.name,
                  'id': self.record.id})
        start = time.monotonic()
        with contextlib.ExitStack() as self.holding:
            self._copy_and_verify(callback)
            copied = time.monotonic() - start
            self._retire()
            self._place()
        # The source's handles are closed: it is out of every client's
        # reach under its retired name, and removal needs it unopened.
        self._remove_source()
        LOG.info('Migrated %(name)s to %(where)s by %(method)s in %(sec).2f '
                 's (copy and verification %(copy).2f s).',
                 {'name': name, 'where': self.where,
                  'method': self.method.name,
                  'sec': time.monotonic() - start, 'copy': copied})

    def _copy_and_verify(self, callback):
        """Steps 3 and 4; on any failure, undo them and close the journal."""
        # The journal's copy of the progress first: it never raises, and
        # a caller's callback that cancels still leaves it written.
        relay = native.ProgressRelay(progress.Fanout(
            journal.Publisher(self.journal, self.record,
                              self.backend.progress_interval), callback))
        try:
            guard, held = self.holding.enter_context(self._held_source())
            self.move = dataclasses.replace(self.move, source=held,
                                            guard=guard)
            if self.method.name == 'clone_flatten':
                self.record.snapshot = journal.snapshot_name(
                    self.record.id)
            self.journal.update(self.record, journal.COPYING)
            self.method.copy(self.move, relay)
            faults.point('engine.copied')
            self._refuse_if_used(guard)
            try:
                self._verify(held)
            except exception.CopyError as err:
                raise _Unverified() from err
            self.journal.update(self.record, journal.VERIFIED)
        except self.rbd.ImageExists:
            # Another image took the copy's own name: never ours to remove.
            self._undo(discard=False)
            raise checks.Unsafe('an image named %s appeared in %s before '
                                'the copy began; it was left untouched.'
                                % (self.move.temp, self.where))
        except _InUse as why:
            raise checks.Unsafe('%s; %s.' % (why, self._undone(self._undo())))
        except checks.Refusal:
            self._undo()
            raise
        except _Unverified as err:
            self._undo()
            raise exception.MigrationError(
                volume=self.volume.id,
                reason='the copy in %s did not verify: %s; it was removed '
                       'and the source is intact.' % (self.where,
                                                      err.__cause__)
            ) from err.__cause__
        except Exception as err:
            if images.timed_out(err):
                # The cluster stopped answering: every cleanup operation
                # would wait as long again.  The journal says what to undo.
                raise exception.MigrationError(
                    volume=self.volume.id,
                    reason='%s to %s timed out (%s); the source is intact, '
                           'and "rbdmig recover" (or the next start of '
                           'this backend) removes the partial copy.'
                           % (self.method.name, self.where, err)) from err
            self._undo()
            if relay.sink.cancelled:
                raise  # the caller cancelled: its own exception, unchanged
            raise exception.MigrationError(
                volume=self.volume.id,
                reason='%s to %s failed (%s); what it built was removed and '
                       'the source is intact.' % (self.method.name,
                                                  self.where, err)) from err
        except BaseException:
            self._undo()
            raise

    @contextlib.contextmanager
    def _held_source(self):
        """Yield ``(guard, reader)``: the source, locked, and read-only.

        The guard holds librbd's exclusive lock in exclusive mode, which
        fails every other client's writes until the source is retired;
        images without the exclusive-lock feature are checked for other
        clients instead (:meth:`_refuse_if_used`).  Reads go through the
        read-only handle.  ``live`` opens the source itself.
        """
        if not self.method.uses_source_handle:
            yield None, None
            return
        rbd, ioctx = self.backend.rbd, self.move.src_ioctx
        name = self.move.name
        with self.rbd.Image(ioctx, name) as guard:
            if self.source.features & rbd.RBD_FEATURE_EXCLUSIVE_LOCK:
                guard.lock_acquire(rbd.RBD_LOCK_MODE_EXCLUSIVE)
            with self.rbd.Image(ioctx, name, read_only=True) as reader:
                yield guard, reader

    def _users(self, image):
        """Why the source is in use by someone else, or None."""
        ours = self.client.get_instance_id()
        others = [w for w in image.watchers_list() if w.get('id') != ours]
        if others:
            return ('a client opened its image during the migration (it '
                    'may be writing to it)')
        children = list(image.list_children2())
        if children:
            return ('a clone of one of its snapshots appeared during the '
                    'migration (the clone needs the source)')
        return None

    def _refuse_if_used(self, held):
        """Refuse if another client opened the source during the copy.

        :raises _InUse: it did; undone, it is refused (:class:`Unsafe`).
        """
        why = held is not None and self._users(held)
        if why:
            raise _InUse(why)

    def _verify(self, held):
        # live: librbd moved the data itself, and reads of the target are
        # served from the source until it is committed; size and
        # snapshots are what can be checked.
        level = self.backend.verify if held is not None else 'none'
        snaps = self.source.snaps if self.method.keeps_snapshots else None
        with self.rbd.Image(self.move.dst_ioctx, self.move.temp,
                            read_only=True) as copy:
            verify.run(held, copy, level, self.source.size, snaps,
                       clusters=(self.move.cluster, self.move.dst_cluster),
                       maps=self._maps())

    def _maps(self):
        """verify's ``maps``: where the source's and the copy's object
        maps are read."""
        return self.rbd, self.move.src_ioctx, self.move.dst_ioctx

    def _retire(self):
        """Step 5: the source, still locked, goes out of every client's
        reach under its retired name; a client or a clone using it, or
        data that changed, undoes the move instead."""
        guard = self.move.guard
        if guard is not None:
            (self.record.source_id, self.record.source_prefix,
             self.record.source_data_pool) = images.identity(
                self.client, self.move.src_ioctx, guard)
        try:
            self.journal.update(self.record, journal.RETIRING)
        except self.journal.rados.Error as err:
            raise self._unjournaled(journal.RETIRING, err) from err
        if guard is None:  # live: librbd's commit removes the source
            return
        try:
            self.rbd.RBD().rename(self.move.src_ioctx, self.move.name,
                                  self.move.retired)
            self.retired = True
            faults.point('engine.retired')
            why = self._users(guard) or self._changed_unlocked()
        except Exception as err:
            raise self._given_back(
                'retiring the source failed (%s)' % err) from err
        if why:
            raise self._given_back(why, unsafe=True)

    def _changed_unlocked(self):
        """Why a source without exclusive-lock differs from its copy now
        that no client can open it, or None.

        Nothing held its writers off during the copy: a client that
        opened, wrote and closed between two looks at the watchers left
        no trace but its data.  Retired, the source can change no more:
        all of both is compared, at the OSDs where the extension can
        (``osd_checksum``), else every byte through new handles (a cached
        one could answer from before the write).
        """
        rbd = self.backend.rbd
        if self.source.features & rbd.RBD_FEATURE_EXCLUSIVE_LOCK:
            return None
        with self.rbd.Image(self.move.src_ioctx, self.move.retired,
                            read_only=True) as source, self.rbd.Image(
                self.move.dst_ioctx, self.move.temp,
                read_only=True) as copy:
            try:
                verify.run(source, copy, 'osd_checksum', self.source.size,
                           clusters=(self.move.cluster,
                                     self.move.dst_cluster),
                           maps=self._maps())
            except exception.CopyError as err:
                return ('a client wrote to its image during the copy (it '
                        'has no exclusive-lock to keep writers off: %s)'
                        % err)
        return None

    def _place(self):
        """Step 6: the verified copy takes the image's name, and the
        authority is told it names the copy from now on."""
        try:
            self.journal.update(self.record, journal.PLACED)
        except self.journal.rados.Error as err:
            raise self._unjournaled(journal.PLACED, err) from err
        try:
            self.method.place(self.move)
        except self.rbd.ImageExists:
            raise self._given_back(
                'an image named %s appeared in %s during the copy, and '
                'was left untouched' % (self.move.name, self.where),
                unsafe=True)
        except Exception as err:
            raise self._given_back(
                'the copy in %s could not take the name %s (%s)'
                % (self.where, self.move.name, err)) from err
        if self.authority is not None:
            # Told before it answers: a save that committed, its answer
            # lost, names the copy all the same (undone, it is put back).
            self.told = True
            try:
                self.authority.moved(self.record)
            except Exception as err:
                raise self._given_back(
                    'the copy took the name in %s, but recording that '
                    'failed (%s)' % (self.where, err)) from err

    def _remove_source(self):
        """Step 7: remove the retired source, untag the copy, close the
        journal; what fails is left to recovery, journaled.  The move
        stands from here: nothing raises once the source is removed."""
        try:
            self.journal.update(self.record, journal.REMOVING)
        except Exception as err:
            # Nothing is removed unless journaled first.  A record taken
            # over (recovery finished it, the image claimed anew) fails
            # the give-back's own journal write too, which then touches
            # nothing: the recovery that took it decided.
            raise self._given_back(
                'the copy took the name in %s, but journaling the removal '
                'of the source failed (%s), so the source was not removed'
                % (self.where, err)) from err
        try:
            self.method.remove_source(self.move)
        except self.rbd.ImageBusy:
            if self.move.guard is not None:
                raise  # never: a retired source is out of clients' reach
            # live: a client opened the source before librbd committed;
            # aborting gives it back whole, and what was told the copy
            # holds the name (Cinder's row) names the source again before
            # the record closes (_undo).
            self._undo()
            raise checks.Unsafe('a client opened its image at the end of '
                                'the copy; the live migration was aborted '
                                'and the source is intact.')
        except Exception:
            # The copy is complete, verified and placed: the migration
            # stands, and the journal (REMOVING) has recovery finish.
            LOG.exception('LEFTOVER: %(name)s was migrated to %(where)s, '
                          'but removing the source from pool %(src)s failed;'
                          ' "rbdmig recover" will remove it.',
                          {'name': self.move.name, 'where': self.where,
                           'src': self.backend.pool})
            return
        try:
            with self.rbd.Image(self.move.dst_ioctx, self.move.name) as image:
                image.metadata_remove(journal.TAG)
        except (self.rbd.ImageNotFound, KeyError):
            pass
        except self.rbd.Error:
            LOG.warning('Could not remove the tag of %s; harmless.',
                        self.move.name)
        try:
            self.journal.finish(self.record)
        except Exception as err:
            # The copy is the volume and the source is gone: the move
            # stood, and failing it now would have the caller record the
            # volume where no image is left.  A record left at REMOVING
            # is completed by recovery (the placed copy found, untagged
            # or not); an index key without its record is dropped.
            if journal.taken_over(err):
                LOG.warning('%(name)s was migrated to %(where)s; its '
                            'journal record is another migration\'s now '
                            'and was left to it.',
                            {'name': self.move.name, 'where': self.where})
                return
            LOG.exception('%(name)s was migrated to %(where)s, but closing '
                          'its journal record failed; "rbdmig recover" '
                          'will.', {'name': self.move.name,
                                    'where': self.where})
