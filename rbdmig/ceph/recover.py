"""Recovery: finish or undo what a dead process left in the journal."""

import dataclasses
import functools
import socket
import time

from oslo_log import log as logging

from rbdmig import exception
from rbdmig.ceph import images
from rbdmig.ceph import journal
from rbdmig.ceph import liveness
from rbdmig.ceph import location
from rbdmig.ceph import checks
from rbdmig.migration import phases

LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What recovery did with one journaled migration."""

    record: journal.Record
    action: str  # skipped, released, rolled back, completed, failed...
    detail: str

    def __str__(self):
        return '%s: %s (%s)' % (self.record, self.action, self.detail)


class Authority(object):
    """What names the volume, and is told what recovery made of a move.

    A database names the source until the move returned (rbdmig's, once
    the service recorded it; Cinder's row, once the manager saved it):
    so by default, the source.  Under Cinder the row is read
    (:class:`rbdmig.cinder.authority.CinderAuthority`).
    """

    #: The service that runs the moves, journaled with each (status
    #: shows it); None: the process, its host, is all there is to say.
    service = None

    def names(self, record):
        """:data:`phases.SOURCE` or :data:`phases.DEST`, for ``record``."""
        return phases.SOURCE

    def settle(self, record, decision):
        """Called once recovery carried ``decision`` out for ``record``."""

    def moved(self, record):
        """Called by the move once its copy holds the volume's name and
        before the source goes; raising undoes the move.  An authority
        that can names the destination from here on."""

    def restored(self, record):
        """Called by the move when, after :meth:`moved`, it gave the
        source back after all (``live``: a client opened the image before
        librbd's commit, which was aborted): name the source again."""


def recover(backend, any_host=False, authority=None):
    """Recover every migration journaled in ``backend``'s pool.

    Each journaled migration (:mod:`rbdmig.ceph.journal`) whose process no
    longer runs is brought to an end where one complete copy exists and
    nothing is left over.  What is done is the phase table's decision
    (:func:`rbdmig.migration.phases.decide`) for the record's phase, what
    exists on each side, and what the authority names as the volume:

    * ``release``: nothing was built, or nothing is left to keep; the
      record goes.
    * ``roll back``/``restore``: the retired source gets its name back,
      the copy (under the migration's name, or under the volume's name
      with the migration's tag) and the temporary snapshot are removed;
      the source is the volume.
    * ``complete``/``adopt``: the verified copy takes the image's name,
      the source (under its name or its retired one, half-removed
      included) is removed; ``adopt`` is told to an authority that still
      names a source that is no longer whole.
    * ``keep``: nothing safe to do; the record stays and the log says why.
    * ``live``: committed if librbd had executed it and the authority
      names the destination, aborted otherwise.

    Only ever removes images whose name or tag says they are the
    migration's, or the source once its copy is proven complete.

    :param any_host: also take over records whose client still holds
        its journal watch (a host known to be dead whose watch has not
        expired yet): the client is blocklisted first.
    :param authority: an :class:`Authority`: what names the volume, told
        each decision once carried out.
    :returns: a list of :class:`Outcome`, one per record; a record that
        could not be recovered stays in the journal (``failed``).
    """
    if authority is None:
        authority = Authority()
    outcomes = []
    with backend.connect() as (src_client, src_ioctx):
        pool_journal = journal.Journal(backend.rados, src_ioctx)
        for record in pool_journal.records():
            try:
                if _owner_alive(backend, src_client, src_ioctx, record,
                                any_host):
                    outcomes.append(Outcome(record, 'skipped',
                                            'its process still runs on %s'
                                            % record.host))
                    continue
                outcome = _Recovery(backend, pool_journal, src_client,
                                    src_ioctx, record, authority).run()
            except Exception as err:
                LOG.exception('Recovering %s failed; it stays in the '
                              'journal.', record)
                outcome = Outcome(record, 'failed', str(err))
            LOG.warning('Recovered %s', outcome)
            outcomes.append(outcome)
    return outcomes


def _owner_alive(backend, client, ioctx, record, any_host):
    """Whether the migrating process may still run.

    A record of this host whose lock (:func:`journal.running`) is held
    runs in a process here: it is never taken over, not even forced (no
    ``any_host`` makes a live process on this very host dead, and
    between the copy taking the name and the source's removal it holds
    no image recovery could fence it off).  Else Ceph decides, for a
    record of any host: once no watch of the migrating client remains
    (the OSDs drop it :data:`liveness.WATCH_TIMEOUT` seconds after the
    client stopped; a record claimed but not watched yet is given as
    long), its process is gone.  A watch that remains is fenced off (the
    client blocklisted) when this host knows the process is dead (its
    lock on this host is free) or the operator says so (``any_host``).
    When Ceph cannot list the watchers, this host's lock decides for its
    own records, and another host's are left alone, forced or not: its
    client cannot be fenced off without them.
    """
    here = record.host == socket.gethostname()
    if here and record.owner_alive():
        return True
    oid = journal.RECORD_PREFIX + record.image
    try:
        found = liveness.watchers(ioctx, backend.address, backend.pool, oid)
    except exception.VolumeBackendAPIException as err:
        if here:
            LOG.warning('Cannot ask Ceph whether %(rec)s still runs '
                        '(%(err)s); this host\'s lock says it does not.',
                        {'rec': record, 'err': err})
            return False
        LOG.warning('Cannot ask Ceph whether %(rec)s still runs on '
                    '%(host)s (%(err)s); it is left alone%(forced)s.',
                    {'rec': record, 'host': record.host, 'err': err,
                     'forced': ', forced or not: its client cannot be '
                               'fenced off without the watchers'
                     if any_host else ''})
        return True
    owner = record.clients.get('source')
    held = [w for w in found if w.client == owner]
    if not held:
        # A watch needs its object: the migrating process claims the
        # record first, then watches it.  A record just claimed and not
        # watched yet may be a live one's (another host's recovery
        # released it under a draining host, whose watch then failed);
        # a killed process's watch would linger as long.
        return (not any_host and not here and
                record.phase == journal.CLAIMED and record.updated is not
                None and time.time() - record.updated
                < liveness.WATCH_TIMEOUT)
    if not any_host and not here:
        return True
    LOG.warning('Fencing client.%(id)s: %(rec)s is taken over.',
                {'id': owner, 'rec': record})
    liveness.fence(client, {w.addr for w in held}, lambda: any(
        w.client == owner for w in liveness.watchers(
            ioctx, backend.address, backend.pool, oid)), oid)
    return False


class _Recovery(object):
    def __init__(self, backend, pool_journal, src_client, src_ioctx, record,
                 authority):
        self.backend, self.journal = backend, pool_journal
        self.src_client, self.src_ioctx = src_client, src_ioctx
        self.record = record
        self.authority = authority
        self.rbd = backend.native_rbd
        self.decision = None  # what _act carries out

    def run(self):
        record = self.record
        if record.phase == journal.CLAIMED:
            return self._done('released', 'nothing had been built',
                              phases.RELEASE)
        dest = location.LocationInfo(**record.dest)
        address = checks.destination_address(self.backend, dest)
        with self.backend.connect(pool=dest.pool, address=address) as (
                dst_client, dst_ioctx):
            self.dst_ioctx = dst_ioctx
            self._fence(self.src_client, self.src_ioctx, 'source',
                        [n for n in (record.image, record.retired) if n])
            self._fence(dst_client, dst_ioctx, 'dest',
                        {record.temp, record.image})
            # Fenced: nothing of the dead process renames any more.  A
            # rename it was killed in left names the directory does not
            # list, which would block (or mislead) every step below.
            error = self.journal.rados.Error
            images.clear_stale_names(
                self.rbd, self.src_ioctx, error,
                [record.image, record.retired], [record.source_id])
            images.clear_stale_names(self.rbd, dst_ioctx, error,
                                     [record.image, record.temp], [])
            names = self.authority.names(record)
            if record.method == 'live':
                decision, outcome = self._live(names)
            else:
                decision = phases.decide(
                    record.phase, names, self._source_whole(),
                    self._copy_complete())
                LOG.info('Recovering %(rec)s: the authority names the '
                         '%(names)s; decision: %(decision)s.',
                         {'rec': record, 'names': names,
                          'decision': decision})
                self.decision = decision
                outcome = self._act(decision)
            return outcome

    def _act(self, decision):
        if decision == phases.RELEASE:
            return self._release()
        if decision in (phases.ROLL_BACK, phases.RESTORE):
            return self._roll_back()
        if decision == phases.KEEP:
            raise exception.MigrationError(
                volume=self.record.image,
                reason='its source is partly removed and its copy is '
                       'missing: nothing is safe to remove, everything '
                       'is kept for a person to look at')
        return self._complete()

    def _fence(self, client, ioctx, side, names):
        """Blocklist the migrating process's client where it still watches.

        A killed process's watches and exclusive lock linger until they
        time out; a process thought dead that is not must not write once
        recovery acts.  Blocklisting its librados client (``profile rbd``
        may) ends both at once.
        """
        dead = self.record.clients.get(side)
        if dead is None:
            return
        for name in names:
            try:
                with self.rbd.Image(ioctx, name, read_only=True) as image:
                    addrs = {w['addr'] for w in image.watchers_list()
                             if w['id'] == dead}
            except self.rbd.ImageNotFound:
                continue
            if addrs:
                LOG.warning('Fencing client.%(id)s, which %(rec)s left '
                            'watching %(name)s.', {
                                'id': dead, 'rec': self.record,
                                'name': name})
                liveness.fence(client, addrs, functools.partial(
                    self._watched_by, ioctx, name, dead), name)

    def _watched_by(self, ioctx, name, client_id):
        with self.rbd.Image(ioctx, name, read_only=True) as image:
            return any(w['id'] == client_id for w in image.watchers_list())

    def _done(self, action, detail, decision):
        """The authority is told what was decided, then the record goes:
        a recovery that dies in between leaves the record, and the next
        one tells the authority again (never a row naming where the
        volume no longer is, with no record left to correct it).

        A record that is another migration's by then (a recovery racing
        this one ended it, and the image was claimed since) is left to
        that migration: the outcome says so.
        """
        self.authority.settle(self.record, decision)
        try:
            self.journal.finish(self.record)
        except self.journal.rados.Error as err:
            if not journal.taken_over(err):
                raise
            LOG.warning('%(rec)s: %(action)s, but its journal record is '
                        'another migration\'s now and was left to it.',
                        {'rec': self.record, 'action': action})
            detail += ('; its record was another migration\'s by then, '
                       'and was left to it')
        return Outcome(self.record, action, detail)

    def _exists(self, ioctx, name):
        return images.exists(self.rbd, ioctx, name)

    def _is_ours(self, name):
        try:
            with self.rbd.Image(self.dst_ioctx, name,
                                read_only=True) as image:
                return image.metadata_get(journal.TAG) == self.record.id
        except (self.rbd.ImageNotFound, KeyError):
            return False

    def _source_whole(self):
        """The source exists, under its name or its retired one (from
        REMOVING on: any of it, half-removed included)."""
        record = self.record
        if record.phase == journal.REMOVING:
            return record.retired in self.rbd.RBD().list(self.src_ioctx)
        return (self._exists(self.src_ioctx, record.image) or
                self._exists(self.src_ioctx, record.retired))

    def _copy_complete(self):
        """The verified copy exists, unplaced or placed (tagged ours).

        From REMOVING on the copy was placed (REMOVING is journaled only
        once it holds the name): the image of the volume's name in the
        destination is it, tagged or not (the move untags it just before
        it closes the record, and closing may fail or be killed).
        """
        record = self.record
        if phases.PHASES.index(record.phase) < phases.PHASES.index(
                journal.VERIFIED):
            return False
        if record.phase == journal.REMOVING:
            return self._exists(self.dst_ioctx, record.image)
        return (self._exists(self.dst_ioctx, record.temp) or
                self._is_ours(record.image))

    def _release(self):
        record = self.record
        images.remove(self.rbd, self.dst_ioctx, record.temp)
        if record.snapshot:
            self._drop_snapshot()
        return self._done('released', 'nothing complete had been built; '
                          'the source is the volume' if self._source_whole()
                          else 'neither the source nor a complete copy '
                          'exists any more', phases.RELEASE)

    def _roll_back(self):
        record = self.record
        self._restore_source()
        images.remove(self.rbd, self.dst_ioctx, record.temp)
        if record.image != record.temp and self._is_ours(record.image):
            # A copy placed under the volume's name, tagged ours.
            images.remove(self.rbd, self.dst_ioctx, record.image)
        if record.snapshot:
            self._drop_snapshot()
        return self._done('rolled back', 'the copy in pool %s was removed; '
                          'the source is the volume' % record.dest['pool'],
                          phases.ROLL_BACK)

    def _drop_snapshot(self):
        for name in (self.record.image, self.record.retired):
            if self._exists(self.src_ioctx, name):
                images.drop_snapshot(self.rbd, self.src_ioctx, name,
                                     self.record.snapshot)

    def _restore_source(self):
        """The retired source, whole, gets its name back."""
        record = self.record
        if (self._exists(self.src_ioctx, record.retired) and
                not self._exists(self.src_ioctx, record.image)):
            images.rename(self.rbd, self.src_ioctx,
                          self.journal.rados.Error, record.retired,
                          record.image)

    def _users(self, name):
        """Why the source ``name`` is used by a client or a clone, or
        None (the dead process was fenced off before)."""
        with self.rbd.Image(self.src_ioctx, name, read_only=True) as image:
            if list(image.watchers_list()):
                return 'a client has the source open'
            if list(image.list_children2()):
                return 'a clone depends on a snapshot of the source'
        return None

    def _complete(self):
        """The verified copy becomes the volume; the source goes.

        The same phases as the move itself, each journaled before its
        action: the source is retired (unless a client or a clone uses
        it: then the move is undone, the source whole), the copy placed,
        the source removed.
        """
        record = self.record
        if record.phase in (journal.VERIFIED, journal.RETIRING) and (
                self._exists(self.src_ioctx, record.image)):
            why = self._users(record.image)
            if why:
                LOG.warning('Not completing %(rec)s: %(why)s; undoing it '
                            'instead.', {'rec': record, 'why': why})
                return self._roll_back()
            with self.rbd.Image(self.src_ioctx, record.image,
                                read_only=True) as image:
                (record.source_id, record.source_prefix,
                 record.source_data_pool) = images.identity(
                    self.src_client, self.src_ioctx, image)
            self._advance(journal.RETIRING)
            images.rename(self.rbd, self.src_ioctx,
                          self.journal.rados.Error, record.image,
                          record.retired)
        self._advance(journal.RETIRING)
        self._advance(journal.PLACED)
        if self._exists(self.dst_ioctx, record.temp):
            try:
                images.rename(self.rbd, self.dst_ioctx,
                              self.journal.rados.Error, record.temp,
                              record.image)
            except self.rbd.ImageExists:
                raise exception.MigrationError(
                    volume=record.image,
                    reason='its verified copy %s cannot take the name: '
                           'another image has it' % record.temp)
        self._advance(journal.REMOVING)
        self._remove_retired()
        with self.rbd.Image(self.dst_ioctx, record.image) as image:
            try:
                image.metadata_remove(journal.TAG)
            except KeyError:
                pass
        return self._done('completed', 'the verified copy is the volume '
                          'in pool %s; the source was removed'
                          % record.dest['pool'], self.decision)

    def _advance(self, phase):
        """Journal ``phase`` unless the record is there or past it."""
        if phases.PHASES.index(self.record.phase) < phases.PHASES.index(
                phase):
            self.journal.update(self.record, phase)

    def _remove_retired(self):
        """Remove the retired source, a half-removed one included."""
        record = self.record
        listed = record.retired in self.rbd.RBD().list(self.src_ioctx)
        half = listed and not self._exists(self.src_ioctx, record.retired)
        images.remove_retired(self.rbd, self.src_ioctx, record.retired)
        if half and record.source_id:
            data_ioctx = None
            if record.source_data_pool:
                data_ioctx = self.src_client.open_ioctx(
                    record.source_data_pool)
            try:
                swept = images.remove_objects(
                    self.src_ioctx, record.source_id, record.source_prefix,
                    data_ioctx)
            finally:
                if data_ioctx is not None:
                    data_ioctx.close()
            LOG.warning('The source of %(rec)s was half-removed; %(n)d of '
                        'its objects were swept.', {'rec': record,
                                                    'n': swept})

    def _live(self, names):
        rbd = self.rbd
        try:
            status = rbd.RBD().migration_status(self.dst_ioctx,
                                                self.record.temp)
        except (rbd.ImageNotFound, rbd.InvalidArgument):
            # Committed (the target is the volume) or aborted: the
            # destination says which.
            done = self._exists(self.dst_ioctx, self.record.temp)
            decision = phases.COMPLETE if done else phases.RELEASE
            return decision, self._done(
                'released', 'librbd has no migration of it in progress '
                '(committed or aborted)', decision)
        executed = (status['state'] ==
                    self.backend.rbd.RBD_IMAGE_MIGRATION_STATE_EXECUTED)
        # librbd keeps the source until the commit: whole, whatever the
        # phase; the copy is complete once executed.
        decision = phases.decide(self.record.phase, names, True, executed)
        if decision in (phases.COMPLETE, phases.ADOPT):
            rbd.RBD().migration_commit(self.dst_ioctx, self.record.temp)
            return decision, self._done('committed',
                                        'librbd had executed it', decision)
        rbd.RBD().migration_abort(self.dst_ioctx, self.record.temp)
        return phases.ROLL_BACK, self._done('aborted', 'the source is the '
                                            'volume again', phases.ROLL_BACK)
