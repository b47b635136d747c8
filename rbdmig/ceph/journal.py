"""The migration journal: what a move is doing, kept in the source pool."""

import contextlib
import dataclasses
import errno
import fcntl
import json
import os
import socket
import tempfile
import time
import uuid

from oslo_log import log as logging

from rbdmig import exception
from rbdmig import faults
from rbdmig import native
from rbdmig.migration import phases
from rbdmig.migration import progress

LOG = logging.getLogger(__name__)

RECORD_PREFIX = 'rbdmig_migration.'
INDEX = 'rbdmig_migrations'
# Image metadata key on the images a migration creates: its id.
TAG = 'rbdmig.migration'
# Omap keys of a record's object, beside the record (its data): the id of
# the migration that created it, and that migration's latest progress.
ID_KEY = 'migration'
PROGRESS_KEY = 'progress'

# The phases (:mod:`rbdmig.migration.phases`): only a record in COPYING
# may own a partial copy; from VERIFIED on the copy (under ``temp``, then
# the image's name; for ``live``, the migration target) is complete and
# verified; from RETIRING the source may be under ``retired``.
CLAIMED = phases.CLAIMED
COPYING = phases.COPYING
VERIFIED = phases.VERIFIED
PLACED = phases.PLACED
RETIRING = phases.RETIRING
REMOVING = phases.REMOVING
PHASES = phases.PHASES


def temp_name(image, migration_id):
    """The name a copy of ``image`` is built under before it is renamed."""
    return '%s.rbdmig-%s' % (image, migration_id)


def retired_name(image, migration_id):
    """The name a migrated source is renamed to before it is removed."""
    return '%s.rbdmig-%s.retired' % (image, migration_id)


def snapshot_name(migration_id):
    """The name of a migration's temporary snapshot of its source."""
    return 'rbdmig-migrate-%s' % migration_id


def taken_over(err):
    """Whether ``err``, raised by a write of a migration's record (its
    :meth:`Journal.update`, :meth:`Journal.report` or
    :meth:`Journal.finish`), says the record is no longer that
    migration's: ended by another process (ENOENT), or the image claimed
    since by another migration (ECANCELED: the compare with the
    migration's id failed)."""
    return getattr(err, 'errno', None) in (
        errno.ENOENT, -errno.ENOENT, errno.ECANCELED, -errno.ECANCELED)


def _lock_dir():
    for base in ('/run/lock', tempfile.gettempdir()):
        if os.access(base, os.W_OK):
            return os.path.join(base, 'rbdmig')
    return os.path.join(tempfile.gettempdir(), 'rbdmig')


@contextlib.contextmanager
def running(record):
    """Hold the host-local lock that says ``record``'s migration runs.

    The kernel releases an ``flock`` when its process dies, so on this
    host "the lock is held" means exactly "the migration is running": not
    merely "its process lives" (a process whose migration failed and
    could not clean up lives on).
    """
    path = record.lock_path
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        finally:
            os.close(fd)


@dataclasses.dataclass
class Record:
    """One migration, as the journal keeps it."""

    id: str
    image: str
    method: str
    source_pool: str
    dest: dict  # location_info's fields: cluster_name ceph_conf fsid ...
    temp: str
    phase: str = CLAIMED
    snapshot: str = None
    # The source's name once retired, its image id and data object prefix
    # (a source half-removed by a kill cannot be opened to learn them),
    retired: str = None
    source_id: str = None
    source_prefix: str = None
    # The pool holding the source's data objects, when not its own.
    source_data_pool: str = None
    # The volume's id, and Cinder's host strings (``host@backend#pool``)
    # of the destination, what Cinder's row says once it moved, and of
    # the source, what it says again once a move is undone: a recovery
    # in another process puts the row back from here.
    dest_host: str = None
    source_host: str = None
    volume_id: str = None
    # The migrating process's librados client ids, by cluster ('source',
    # 'dest'): recovery fences them off (blocklists them) before it acts.
    clients: dict = dataclasses.field(default_factory=dict)
    host: str = dataclasses.field(default_factory=socket.gethostname)
    # The service running it, when the authority names one: under
    # Cinder, the cinder-volume's ``host@backend`` (several may share a
    # machine, and in an active-active cluster any member runs a move).
    service: str = None
    pid: int = dataclasses.field(default_factory=os.getpid)
    lock_dir: str = dataclasses.field(default_factory=_lock_dir)
    started: float = dataclasses.field(default_factory=time.time)
    # When the record was last written (its phase changed).
    updated: float = None

    @classmethod
    def new(cls, image, method, source_pool, dest, live=False):
        """A record for a new migration, with a new id."""
        migration_id = uuid.uuid4().hex[:12]
        temp = image if live else temp_name(image, migration_id)
        return cls(id=migration_id, image=image, method=method,
                   source_pool=source_pool, dest=dict(dest), temp=temp,
                   retired=retired_name(image, migration_id))

    def to_bytes(self):
        return json.dumps(dataclasses.asdict(self), sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data):
        fields = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in json.loads(data).items()
                      if k in fields})

    @property
    def lock_path(self):
        """The file whose lock :func:`running` holds."""
        return os.path.join(self.lock_dir, 'migration-%s.lock' % self.id)

    def owner_alive(self):
        """Whether this host says this migration still runs.

        A record from another host: True (this host cannot tell; Ceph
        can, :mod:`rbdmig.ceph.liveness`).
        """
        if self.host != socket.gethostname():
            return True
        try:
            fd = os.open(self.lock_path, os.O_RDONLY)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)
        return False

    def __str__(self):
        return 'migration %s of %s (%s, %s)' % (self.id, self.image,
                                                 self.method, self.phase)


class Journal(object):
    """The journal of one source pool.

    Before any data moves, a migration claims its image by creating the
    RADOS object ``rbdmig_migration.<image>`` exclusively in the source pool
    (a second claim fails: two processes never move one image) and writes
    its record there as JSON: id, method, source, destination, the name the
    copy is built under, the temporary snapshot if any, the phase and the
    owning process.  The omap of ``rbdmig_migrations`` indexes the records,
    so recovery reads one object instead of listing a pool.  Nothing here
    is a secret: the destination is described by ``location_info`` fields.

    The record's omap holds what changes often: the id of the migration
    that claimed the object (written with the claim) and its progress
    (:meth:`report`), which anyone reading the pool can see
    (``rbdmig status``).  Progress never rewrites the record: a phase
    change stays one ``write_full`` of the object's data, and no
    progress write, late or not, can undo one.

    Images rbdmig creates are built under :func:`temp_name` (the image's
    name and the migration id), so cleanup can only ever remove images whose
    name says they are this migration's, and carry :data:`TAG` in their
    image metadata until the move completes.

    :param rados: the ``rados`` module (injectable for tests).
    :param ioctx: the source pool's librados ioctx.
    """

    def __init__(self, rados, ioctx):
        self.rados = rados
        self.ioctx = ioctx

    def _write(self, oid, build):
        with self.rados.WriteOpCtx() as op:
            build(op)
            native.call(self.ioctx.operate_write_op, op, oid)

    def oid(self, record):
        """The RADOS object holding ``record``."""
        return RECORD_PREFIX + record.image

    def _index_key(self, record):
        return '%s/%s' % (record.image, record.id)

    def claim(self, record):
        """Record a new migration; it now owns its image.

        :raises MigrationInProgress: another migration holds the image.
        """
        key = self._index_key(record)
        # Index first: a crash in between leaves a key without a record,
        # which records() drops; never a record nobody can find.
        self._write(INDEX, lambda op: self.ioctx.set_omap(
            op, (key,), (record.id.encode(),)))
        def create(op):
            op.new(self.rados.LIBRADOS_CREATE_EXCLUSIVE)
            op.write_full(record.to_bytes())
            self.ioctx.set_omap(op, (ID_KEY,), (record.id.encode(),))

        record.updated = time.time()

        try:
            self._write(RECORD_PREFIX + record.image, create)
        except self.rados.ObjectExists:
            self._forget(key)
            holder = self.get(record.image)
            raise exception.MigrationInProgress(
                volume=record.image, holder=holder or 'another process')
        LOG.debug('Journal: claimed %s', record)
        faults.point('engine.%s' % CLAIMED)

    def update(self, record, phase):
        """Move ``record`` to ``phase``, in Ceph before anything else.

        The write is compared first with the id the claim wrote, in the
        same operation (as :meth:`report`'s): a process whose record was
        taken over (finished by a recovery, the image claimed since by
        another migration) fails here, and never recreates the record
        nor overwrites another migration's.

        :raises InvalidTransition: the phase table does not allow it.
        :raises rados.Error: the record is no longer this migration's
            (ENOENT, ECANCELED: :func:`taken_over`), or the write failed;
            ``record`` keeps its phase (an undo goes on from it).
        """
        phases.check_transition(record.phase, phase)
        before = record.phase, record.updated
        record.phase = phase
        record.updated = time.time()

        def build(op):
            op.omap_cmp(ID_KEY, record.id,
                        self.rados.LIBRADOS_CMPXATTR_OP_EQ)
            op.write_full(record.to_bytes())

        try:
            self._write(self.oid(record), build)
        except Exception:
            record.phase, record.updated = before
            raise
        LOG.debug('Journal: %s', record)
        faults.point('engine.%s' % phase)

    def report(self, record, values):
        """Store ``values`` (a JSON-able dict) as ``record``'s progress.

        One write of one omap key, compared first with the id the claim
        wrote (``omap_cmp``, in the same operation): once the record is
        finished, or the image claimed by another migration, the write
        fails (ENOENT, ECANCELED) and creates nothing.

        :raises rados.Error: the write failed.
        """
        def build(op):
            op.omap_cmp(ID_KEY, record.id,
                        self.rados.LIBRADOS_CMPXATTR_OP_EQ)
            self.ioctx.set_omap(op, (PROGRESS_KEY,),
                                (json.dumps(values, sort_keys=True)
                                 .encode(),))

        self._write(self.oid(record), build)

    def progress(self, record):
        """The progress :meth:`report` stored for ``record``, or None."""
        try:
            with self.rados.ReadOpCtx() as op:
                vals, _ = self.ioctx.get_omap_vals_by_keys(
                    op, (ID_KEY, PROGRESS_KEY))
                native.call(self.ioctx.operate_read_op, op,
                            self.oid(record))
                found = dict(vals)
        except self.rados.ObjectNotFound:
            return None
        if found.get(ID_KEY) != record.id.encode() or (
                PROGRESS_KEY not in found):
            return None
        try:
            return json.loads(found[PROGRESS_KEY])
        except ValueError:
            return None

    def finish(self, record):
        """Forget a migration that completed or was undone.

        The record is removed by one operation compared first with the
        id the claim wrote (as :meth:`update`'s): a process whose record
        was taken over, and the image claimed since by another
        migration, never removes that migration's record.  A record
        already gone (a recovery that took the move over ended it) is
        finished.  The migration's index key is dropped in each case,
        another migration's record included (the key names this one).

        :raises rados.Error: the record is another migration's
            (ECANCELED, :func:`taken_over`): it was left as it is; or the
            removal failed (the record may stay: recovery ends it).
        """
        def build(op):
            op.omap_cmp(ID_KEY, record.id,
                        self.rados.LIBRADOS_CMPXATTR_OP_EQ)
            op.remove()

        key = self._index_key(record)
        try:
            self._write(self.oid(record), build)
        except self.rados.ObjectNotFound:
            LOG.debug('Journal: %s was ended already', record)
        except self.rados.Error as err:
            if taken_over(err):
                self._forget(key)
            raise
        self._forget(key)
        LOG.debug('Journal: finished %s', record)
        faults.point('engine.finished')

    def _forget(self, key):
        try:
            self._write(INDEX, lambda op: self.ioctx.remove_omap_keys(
                op, (key,)))
        except self.rados.ObjectNotFound:
            pass

    def get(self, image):
        """The record of ``image``'s migration, or None."""
        try:
            data = native.call(self.ioctx.read, RECORD_PREFIX + image,
                               1 << 20)
        except self.rados.ObjectNotFound:
            return None
        return Record.from_bytes(data)

    def records(self, prune=True):
        """Every migration journaled in this pool.

        :param prune: drop the index keys of records that are gone (a
            reader that may not write, ``rbdmig status``, passes False).
        """
        def read(op):
            vals, _ = self.ioctx.get_omap_vals(op, '', '', 100000)
            native.call(self.ioctx.operate_read_op, op, INDEX)
            return list(vals)

        try:
            with self.rados.ReadOpCtx() as op:
                keys = read(op)
        except self.rados.ObjectNotFound:
            return []
        found = []
        for key, value in keys:
            image = key.rsplit('/', 1)[0]
            record = self.get(image)
            if record is None or record.id.encode() != value:
                if prune:
                    self._forget(key)  # a crash between index and record
                continue
            found.append(record)
        return found


class Publisher(progress.IntervalCallback):
    """Writes a migration's progress into its record, once an interval.

    What it writes: bytes done and in all, the average rate since the
    copy began, when it began and when this was written (seconds since
    the epoch), the host and the method.  A write that fails is logged
    and the copy goes on: progress is for people, the move must not
    depend on it.

    :param pool_journal: the source pool's :class:`Journal`.
    :param record: the migration's :class:`Record`.
    :param interval: seconds between writes (the first and the last
        update are always written).
    :param clock: the wall clock the times written are read from.
    :param monotonic: the clock the interval is measured with.
    """

    def __init__(self, pool_journal, record, interval, clock=time.time,
                 monotonic=time.monotonic):
        super().__init__(self._publish, interval, clock=monotonic)
        self.journal, self.record, self.wall = pool_journal, record, clock
        self.began = None

    def _publish(self, cb):
        now = self.wall()
        if self.began is None:
            self.began = now
        elapsed = now - self.began
        values = {'bytes_done': cb.value, 'bytes_total': cb.size,
                  'rate': cb.value / elapsed if elapsed > 0 else None,
                  'started': self.began, 'updated': now,
                  'host': self.record.host, 'method': self.record.method}
        try:
            self.journal.report(self.record, values)
        except Exception as err:  # noqa: BLE001 - never fails the move
            LOG.warning('Could not record the progress of %(rec)s in its '
                        'journal (%(err)s); the copy goes on.',
                        {'rec': self.record, 'err': err})
        else:
            # Once a write, not a step of the move's path: a pause point,
            # where a test looks at what ``rbdmig status`` reads of it.
            faults.pause_point('journal.progress')
