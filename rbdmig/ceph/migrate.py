"""Assisted migration of one image: check, journal, copy, verify, place."""

import contextlib
import dataclasses
import time

from oslo_log import log as logging
from oslo_utils import units

from rbdmig import exception
from rbdmig import native
from rbdmig.ceph import checks
from rbdmig.ceph import images
from rbdmig.ceph import journal
from rbdmig.ceph import verify
from rbdmig.ceph.methods import base
from rbdmig.migration import progress

LOG = logging.getLogger(__name__)

class _Unverified(Exception):
    """The copy differs from the source (its cause says how)."""


def migrate(backend, volume, host, callback=progress.DEFAULT_CALLBACK):
    """Move ``volume``'s image to the pool ``host`` names, keeping its name.

    Within one cluster by ``backend.method``; into another cluster, when
    this host reaches it through the conf in the destination's
    ``location_info``, by the ``extents`` method.

    :param backend: the source :class:`rbdmig.ceph.backend.Backend`.
    :param host: ``{'host': ..., 'capabilities': <destination stats>}``.
    :param callback: a :class:`rbdmig.migration.progress.Callback`, called
        on this thread; it may cancel by raising.
    :returns: ``(moved, model_update)``: ``(True, None)`` once the image is
        in the destination pool and the source is gone, ``(False, None)``
        when it cannot be done here (:class:`checks.Refusal`: nothing was
        changed, and the caller may copy it generically).
    :raises MigrationRefused: it is unsafe to copy now by any path
        (:class:`checks.Unsafe`: a client has it open, snapshots or
        clones would be lost, its name is taken in the destination);
        nothing was changed, and no fallback copy may follow.
    :raises MigrationError: the copy failed; what it built was removed and
        the source is intact.
    """
    try:
        dest = checks.destination(volume, host)
        with contextlib.ExitStack() as stack:
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
            migration.record.clients = {
                'source': client.get_instance_id(),
                'dest': dst_client.get_instance_id()}
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


class _Migration(object):
    """One move, from its journal claim to its journal's end.

    The order is what keeps one complete copy at every instant:

    1. every check that can refuse, before anything changes;
    2. the journal claims the image (:mod:`rbdmig.ceph.journal`);
    3. the copy is built under a name that is the migration's own, while
       the source is held open and, where it can be, exclusively locked;
    4. the copy is verified (``migration_verify``) and the journal says so;
    5. the copy takes the image's name (never over another image);
    6. only then is the source removed, and the journal closed.

    Until 4 the source is the volume and anything built is removed on
    failure; after 4, recovery (:mod:`rbdmig.ceph.recover`) knows the copy
    is complete.
    """

    def __init__(self, backend, method, volume, source, where, client,
                 src_ioctx, dst_ioctx, dest):
        self.backend, self.method, self.volume = backend, method, volume
        self.source, self.where, self.client = source, where, client
        self.rbd = backend.native_rbd
        self.journal = journal.Journal(backend.rados, src_ioctx)
        self.record = journal.Record.new(
            volume.name, method.name, backend.pool, dest._asdict(),
            live=not method.uses_source_handle)
        self.move = base.Move(self.rbd, src_ioctx, dst_ioctx, volume.name,
                              self.record.temp, source.size,
                              self.record.id, src_pool=backend.pool,
                              dst_pool=dest.pool,
                              cluster=backend.cluster_spec())

    def run(self, callback):
        with journal.running(self.record):
            self._run(callback)

    def _run(self, callback):
        name = self.move.name
        try:
            self.journal.claim(self.record)
        except exception.MigrationInProgress as err:
            raise checks.Refusal(str(err))
        LOG.info('Migrating %(name)s (%(size).1f GiB) to %(where)s by '
                 '%(method)s (migration %(id)s).',
                 {'name': name, 'size': self.source.size / units.Gi,
                  'where': self.where, 'method': self.method.name,
                  'id': self.record.id})
        start = time.monotonic()
        self._copy_and_verify(callback)
        copied = time.monotonic() - start
        self._place()
        self._remove_source()
        LOG.info('Migrated %(name)s to %(where)s by %(method)s in %(sec).2f '
                 's (copy and verification %(copy).2f s).',
                 {'name': name, 'where': self.where,
                  'method': self.method.name,
                  'sec': time.monotonic() - start, 'copy': copied})

    def _copy_and_verify(self, callback):
        """Steps 3 and 4; on any failure, undo them and close the journal."""
        relay = native.ProgressRelay(callback)
        copied = False
        try:
            with self._held_source() as (guard, held):
                self.move = dataclasses.replace(self.move, source=held,
                                                guard=guard)
                if self.method.name == 'clone_flatten':
                    self.record.snapshot = journal.snapshot_name(
                        self.record.id)
                self.journal.update(self.record, journal.COPYING)
                self.method.copy(self.move, relay)
                copied = True
                self._check_no_writers(guard)
                try:
                    self._verify(held)
                except exception.CopyError as err:
                    raise _Unverified() from err
            self.journal.update(self.record, journal.VERIFIED)
        except self.rbd.ImageExists:
            self._undo(copied=False)
            raise checks.Refusal('an image named %s appeared in %s before '
                                 'the copy began; it was left untouched.'
                                 % (self.move.name, self.where))
        except checks.Refusal:
            self._undo(copied)
            raise
        except _Unverified as err:
            self._undo(copied)
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
            self._undo(copied)
            if relay.sink.cancelled:
                raise  # the caller cancelled: its own exception, unchanged
            raise exception.MigrationError(
                volume=self.volume.id,
                reason='%s to %s failed (%s); what it built was removed and '
                       'the source is intact.' % (self.method.name,
                                                  self.where, err)) from err
        except BaseException:
            self._undo(copied)
            raise

    @contextlib.contextmanager
    def _held_source(self):
        """Yield ``(guard, reader)``: the source, locked, and read-only.

        The guard holds librbd's exclusive lock in exclusive mode, which
        keeps every other client from writing until the copy is verified;
        images without the exclusive-lock feature are checked for new
        clients instead (:meth:`_check_no_writers`).  Reads go through the
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

    def _check_no_writers(self, held):
        """Refuse if a client opened the source during the copy."""
        image = held
        if image is None:
            return
        ours = self.client.get_instance_id()
        others = [w for w in image.watchers_list() if w.get('id') != ours]
        if others:
            raise checks.Refusal('a client opened its image during the '
                                 'copy; the copy was removed and the '
                                 'source, which it may be writing, is '
                                 'intact.')

    def _verify(self, held):
        # live: librbd moved the data itself, and reads of the target are
        # served from the source until it is committed; size and
        # snapshots are what can be checked.
        level = self.backend.verify if held is not None else 'none'
        snaps = self.source.snaps if self.method.keeps_snapshots else None
        with self.rbd.Image(self.move.dst_ioctx, self.move.temp,
                            read_only=True) as copy:
            native.run(lambda: verify.verify(held, copy, level,
                                             self.source.size, snaps))

    def _undo(self, copied):
        """Remove what this migration built; close the journal if done."""
        try:
            if copied:
                self.method.discard(self.move)
            self.journal.finish(self.record)
        except Exception:
            LOG.exception('Could not undo %s; "rbdmig recover" will finish '
                          'undoing it (the source is intact).', self.record)

    def _place(self):
        """Step 5: the verified copy takes the image's name."""
        try:
            self.method.place(self.move)
        except self.rbd.ImageExists:
            self._undo(copied=True)
            raise checks.Refusal('an image named %s appeared in %s during '
                                 'the copy; it was left untouched and the '
                                 'copy removed.'
                                 % (self.move.name, self.where))

    def _unplace(self):
        """Undo :meth:`_place` and the copy: the source stays the volume.

        The copy gets its migration's name back before the journal says
        it is partial again, so recovery can still find what to remove.
        """
        try:
            if self.move.temp != self.move.name:
                self.rbd.RBD().rename(self.move.dst_ioctx, self.move.name,
                                      self.move.temp)
            self.journal.update(self.record, journal.COPYING)
        except Exception:
            LOG.exception('Could not give %s its temporary name back; '
                          'remove the copy in %s by hand (it is tagged %s=%s;'
                          ' the source is intact).', self.move.name,
                          self.where, journal.TAG, self.record.id)
            return
        self._undo(copied=True)

    def _remove_source(self):
        """Step 6: remove the source, untag the copy, close the journal."""
        try:
            self.method.remove_source(self.move)
        except self.rbd.ImageBusy:
            # A client opened the source after the copy: it may be
            # writing to it.  The source stays the volume.
            self._unplace()
            raise checks.Refusal('a client opened its image at the end of '
                                 'the copy; the copy was removed and the '
                                 'source is intact.')
        except Exception:
            # The copy is complete and verified: the migration stands, and
            # the journal (VERIFIED) lets recovery remove the source.
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
        self.journal.finish(self.record)
