"""Recovery: finish or undo what a dead process left in the journal."""

import dataclasses
import json
import time

from oslo_log import log as logging

from rbdmig import exception
from rbdmig.ceph import images
from rbdmig.ceph import journal
from rbdmig.ceph import location
from rbdmig.ceph import checks

LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Outcome:
    """What recovery did with one journaled migration."""

    record: journal.Record
    action: str  # skipped, released, rolled back, completed, failed...
    detail: str

    def __str__(self):
        return '%s: %s (%s)' % (self.record, self.action, self.detail)


def recover(backend, complete_verified=True, any_host=False):
    """Recover every migration journaled in ``backend``'s pool.

    Each journaled migration (:mod:`rbdmig.ceph.journal`) whose process no
    longer runs is brought to an end where one complete copy exists and
    nothing is left over:

    * ``claimed``: nothing was built; the record goes.
    * ``copying``: the partial copy (under the migration's own name) and the
      temporary snapshot are removed; the source is the volume.
    * ``verified``: the copy is complete.  With ``complete_verified`` (rbdmig
      on its own) it gets the image's name and the source is removed; without
      it (under Cinder, whose database still names the source) it is removed
      instead, unless the source is already gone.
    * ``live``: committed if librbd had executed it (and
      ``complete_verified``), aborted otherwise.

    Only ever removes images whose name or tag says they are the migration's.

    :param complete_verified: finish verified moves (rbdmig on its own);
        False undoes them while their source exists (under Cinder).
    :param any_host: also take over records written on other hosts.
    :returns: a list of :class:`Outcome`, one per record; a record that
        could not be recovered stays in the journal (``failed``).
    """
    outcomes = []
    with backend.connect() as (src_client, src_ioctx):
        pool_journal = journal.Journal(backend.rados, src_ioctx)
        for record in pool_journal.records():
            if not any_host and record.owner_alive():
                outcomes.append(Outcome(record, 'skipped',
                                        'its process still runs on %s'
                                        % record.host))
                continue
            try:
                outcome = _Recovery(backend, pool_journal, src_client,
                                    src_ioctx, record,
                                    complete_verified).run()
            except Exception as err:
                LOG.exception('Recovering %s failed; it stays in the '
                              'journal.', record)
                outcome = Outcome(record, 'failed', str(err))
            LOG.warning('Recovered %s', outcome)
            outcomes.append(outcome)
    return outcomes


class _Recovery(object):
    def __init__(self, backend, pool_journal, src_client, src_ioctx, record,
                 complete_verified):
        self.backend, self.journal = backend, pool_journal
        self.src_client, self.src_ioctx = src_client, src_ioctx
        self.record = record
        self.complete_verified = complete_verified
        self.rbd = backend.native_rbd

    def run(self):
        record = self.record
        if record.phase == journal.CLAIMED:
            return self._done('released', 'nothing had been built')
        dest = location.LocationInfo(**record.dest)
        address = checks.destination_address(self.backend, dest)
        with self.backend.connect(pool=dest.pool, address=address) as (
                dst_client, dst_ioctx):
            self.dst_ioctx = dst_ioctx
            self._fence(self.src_client, self.src_ioctx, 'source',
                        (record.image,))
            self._fence(dst_client, dst_ioctx, 'dest',
                        {record.temp, record.image})
            if record.method == 'live':
                return self._live()
            source_there = self._exists(self.src_ioctx, record.image)
            if record.phase == journal.VERIFIED and (
                    self.complete_verified or not source_there):
                return self._complete(source_there)
            return self._roll_back()

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
            for addr in addrs:
                LOG.warning('Fencing client.%(id)s (%(addr)s), which %(rec)s '
                            'left watching %(name)s.', {
                                'id': dead, 'addr': addr,
                                'rec': self.record, 'name': name})
                ret, _out, err = client.mon_command(json.dumps({
                    'prefix': 'osd blocklist', 'blocklistop': 'add',
                    'addr': addr}), b'')
                if ret:
                    raise exception.VolumeBackendAPIException(
                        data='blocklisting %s failed: %s' % (addr, err))
            if addrs:
                self._wait_unwatched(ioctx, name, dead)

    def _wait_unwatched(self, ioctx, name, dead, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.rbd.Image(ioctx, name, read_only=True) as image:
                if not any(w['id'] == dead for w in image.watchers_list()):
                    return
            time.sleep(0.2)
        raise exception.VolumeBackendAPIException(
            data='client.%s still watches %s after being blocklisted'
                 % (dead, name))

    def _done(self, action, detail):
        self.journal.finish(self.record)
        return Outcome(self.record, action, detail)

    def _exists(self, ioctx, name):
        try:
            with self.rbd.Image(ioctx, name, read_only=True):
                return True
        except self.rbd.ImageNotFound:
            return False

    def _is_ours(self, name):
        try:
            with self.rbd.Image(self.dst_ioctx, name,
                                read_only=True) as image:
                return image.metadata_get(journal.TAG) == self.record.id
        except (self.rbd.ImageNotFound, KeyError):
            return False

    def _roll_back(self):
        record = self.record
        images.remove(self.rbd, self.dst_ioctx, record.temp)
        if record.snapshot:
            self._drop_snapshot()
        return self._done('rolled back', 'the copy %s was removed; the '
                          'source is the volume' % record.temp)

    def _drop_snapshot(self):
        try:
            with self.rbd.Image(self.src_ioctx, self.record.image) as image:
                names = {s['name'] for s in image.list_snaps()}
                if self.record.snapshot in names:
                    if image.is_protected_snap(self.record.snapshot):
                        image.unprotect_snap(self.record.snapshot)
                    image.remove_snap(self.record.snapshot)
        except self.rbd.ImageNotFound:
            pass

    def _complete(self, source_there):
        record = self.record
        if self._exists(self.dst_ioctx, record.temp):
            try:
                self.rbd.RBD().rename(self.dst_ioctx, record.temp,
                                      record.image)
            except self.rbd.ImageExists:
                if source_there:
                    return self._roll_back()
                raise exception.MigrationError(
                    volume=record.image,
                    reason='its verified copy %s cannot take the name: '
                           'another image has it' % record.temp)
        elif not self._is_ours(record.image):
            if source_there:
                return self._done('released', 'no copy had been placed; '
                                  'the source is the volume')
            # Someone deleted the volume since: nothing is left to keep.
            return self._done('released', 'neither the source nor the '
                              'copy exists any more')
        if source_there:
            self._drop_snapshot()
            images.remove_source(self.rbd, self.src_ioctx, record.image)
        with self.rbd.Image(self.dst_ioctx, record.image) as image:
            try:
                image.metadata_remove(journal.TAG)
            except KeyError:
                pass
        return self._done('completed', 'the verified copy is the volume '
                          'in pool %s; the source was removed'
                          % record.dest['pool'])

    def _live(self):
        rbd = self.rbd
        try:
            status = rbd.RBD().migration_status(self.dst_ioctx,
                                                self.record.temp)
        except (rbd.ImageNotFound, rbd.InvalidArgument):
            return self._done('released', 'librbd has no migration of it '
                              'in progress (committed or aborted)')
        executed = (status['state'] ==
                    self.backend.rbd.RBD_IMAGE_MIGRATION_STATE_EXECUTED)
        if executed and self.complete_verified:
            rbd.RBD().migration_commit(self.dst_ioctx, self.record.temp)
            return self._done('committed', 'librbd had executed it')
        rbd.RBD().migration_abort(self.dst_ioctx, self.record.temp)
        return self._done('aborted', 'the source is the volume again')
