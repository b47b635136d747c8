"""Undoing a move that failed, and where it leaves the source, in words."""

from oslo_log import log as logging

from rbdmig import exception
from rbdmig.ceph import checks
from rbdmig.ceph import images
from rbdmig.ceph import journal

LOG = logging.getLogger(__name__)


class Undo(object):
    """Undoes a move that failed before it stood; says where its source is.

    Needs ``self.backend``, ``self.method``, ``self.volume``,
    ``self.where``, ``self.rbd``, ``self.journal``, ``self.record``,
    ``self.move`` and ``self.authority``, and the forward path's flags
    ``self.told`` (the authority was told the copy holds the name) and
    ``self.retired`` (the source is under its retired name): the
    migration of one image (:class:`rbdmig.ceph.migrate._Migration`)
    mixes it in.
    """

    discarded = False  # whether what the move built was removed (_undo)
    taken = False  # whether a give-back found its record taken over

    def _undo(self, discard=True):
        """Remove what this migration built, name the source again where
        the authority was told otherwise; then close the journal.

        The journal stays open, for recovery to finish the undoing, when
        anything could not be removed or the authority could not be told:
        a record is closed only once nothing of its migration is left,
        the authority's word included (recovery puts it back,
        :meth:`rbdmig.ceph.recover.Authority.settle`).  Never raises: its
        callers raise what failed the move.

        :returns: True once undone and the journal closed (or the record
            found another migration's: nothing of this one is left);
            False when recovery is left to finish (the log says why).
        """
        try:
            if discard:
                self.method.discard(self.move)
            if self.record.snapshot:
                images.drop_snapshot(self.rbd, self.move.src_ioctx,
                                     self.move.name, self.record.snapshot)
        except Exception:
            LOG.exception('Could not undo %s; "rbdmig recover" will finish '
                          'undoing it (the source is intact).', self.record)
            return False
        self.discarded = True
        if self.told:
            try:
                self.authority.restored(self.record)
            except Exception:
                LOG.exception('%(rec)s was undone and its source is the '
                              'volume in pool %(src)s, but naming it again '
                              'failed; "rbdmig recover" (or the next start '
                              'of this backend) will.',
                              {'rec': self.record, 'src': self.backend.pool})
                return False
            self.told = False
        try:
            self.journal.finish(self.record)
        except self.journal.rados.Error as err:
            if journal.taken_over(err):
                # Taken over, the image claimed since: never ours to end.
                LOG.warning('%(rec)s was undone; its journal record is '
                            'another migration\'s now and was left to it.',
                            {'rec': self.record})
                return True
            LOG.exception('%(rec)s was undone and its source is the volume '
                          'in pool %(src)s, but closing its journal record '
                          'failed; "rbdmig recover" (or the next start of '
                          'this backend) will.',
                          {'rec': self.record, 'src': self.backend.pool})
            return False
        return True

    def _unjournaled(self, phase, err):
        """The error of a move whose journal write of ``phase``
        (``retiring`` or ``placed``) failed, once undone as far as it
        could be; what is left, recovery undoes (the record says the
        phase before, or ``phase`` if the write landed).

        Nothing was renamed or placed since.  From ``retiring`` on the
        source may be out of every client's reach, under its retired
        name: it is given back even when the cluster stopped answering
        (worth a second wait).  Before, a source whole under its name is
        the volume meanwhile, and with the cluster not answering what the
        move built is left to recovery, as in :meth:`_copy_and_verify`
        (every cleanup operation would wait as long again); ``live``'s
        source is librbd's until its migration is aborted: undone all
        the same.
        """
        step = {journal.RETIRING: 'the retirement of its source',
                journal.PLACED: 'the placing of its copy'}[phase]
        why = 'journaling %s failed (%s)' % (step, err)
        if phase == journal.PLACED:
            return self._given_back(why)
        if images.timed_out(err) and self.method.uses_source_handle:
            undone = False
        else:
            undone = self._undo()
        return exception.MigrationError(
            volume=self.volume.id,
            reason='%s; %s.' % (why, self._undone(undone)))

    def _undone(self, undone):
        """Where the source is, in words, once the move was undone
        (``undone``) or undoing it was left to recovery."""
        recovery = '"rbdmig recover" (or the next start of this backend)'
        if self.taken:
            return ('its journal record was taken over by another process '
                    '(a recovery) before the source was given back, so '
                    'this one touched nothing more: where the source is '
                    'was that process\'s to decide')
        if self.discarded:
            where = ('the source is intact under its name in pool %s, and '
                     'what the move built in %s was removed'
                     % (self.backend.pool, self.where))
            return where if undone else '%s; %s ends its journal record' % (
                where, recovery)
        if not self.method.uses_source_handle:
            return ('the source is whole in pool %s, held by librbd\'s '
                    'migration to %s until %s aborts it'
                    % (self.backend.pool, self.where, recovery))
        if self.retired:
            where = ('the source is whole in pool %s under its retired name '
                     '%s, out of clients\' reach until %s'
                     % (self.backend.pool, self.move.retired, recovery))
            if self.told and self.record.phase != journal.COPYING:
                # The journal still says the copy may hold the name, and
                # the authority may have saved it: recovery goes the way
                # the authority names (phases.decide).
                return ('%s finishes the move: forward to the copy in %s '
                        'if what names the volume names the copy, else '
                        'giving the source its name back' % (where,
                                                             self.where))
            return ('%s gives it its name back and removes what the move '
                    'built in %s' % (where, self.where))
        return ('the source is intact under its name in pool %s, and %s '
                'removes what the move built in %s'
                % (self.backend.pool, recovery, self.where))

    def _give_back(self):
        """Undo steps 3 to 6: the source gets its name back, whole, the
        copy goes, and an authority told it held the name (:meth:`_place`,
        even if telling it failed: it may have saved) names the source
        again (:meth:`_undo`).

        The journal says the copy is partial again first: whatever of
        this is left undone, recovery rolls back.

        :returns: True once undone and the journal closed; False when
            recovery is left to finish (the log says why, and
            :meth:`_undone` where the source is).
        """
        try:
            self.journal.update(self.record, journal.COPYING)
        except Exception as err:
            # Taken over (a recovery ended the record): never ours to
            # touch again.  Else the journal still says where it was.
            self.taken = journal.taken_over(err)
            LOG.exception('Could not journal the undoing of %(rec)s: '
                          '%(where)s.', {'rec': self.record,
                                         'where': self._undone(False)})
            return False
        try:
            # live never renames: librbd's abort (_undo) gives it back.
            if self.method.uses_source_handle and not images.exists(
                    self.rbd, self.move.src_ioctx, self.move.name):
                self.rbd.RBD().rename(self.move.src_ioctx,
                                      self.move.retired, self.move.name)
            self.retired = False
            if self.move.temp != self.move.name and self._copy_placed():
                images.remove(self.rbd, self.move.dst_ioctx, self.move.name)
        except Exception:
            LOG.exception('Could not undo %(rec)s: %(where)s.',
                          {'rec': self.record, 'where': self._undone(False)})
            return False
        return self._undo()

    def _given_back(self, why, unsafe=False):
        """Give the source back (:meth:`_give_back`); return the error
        that fails the move: ``why``, then where the source is.

        :param why: what failed the move, or (``unsafe``) what makes it
            unsafe to copy now.
        :param unsafe: raise :class:`checks.Unsafe` (no generic copy may
            follow) once the source is whole under its name again, and
            nothing of the move left; else, or when the give-back failed
            (the source may still be out of clients' reach), a
            :class:`exception.MigrationError` for recovery to finish.
        """
        undone = self._give_back()
        reason = '%s; %s.' % (why, self._undone(undone))
        if unsafe and undone:
            return checks.Unsafe(reason)
        return exception.MigrationError(volume=self.volume.id, reason=reason)

    def _copy_placed(self):
        """Whether the image named as the volume in the destination is
        this migration's copy (by its tag)."""
        try:
            with self.rbd.Image(self.move.dst_ioctx, self.move.name,
                                read_only=True) as image:
                return image.metadata_get(journal.TAG) == self.record.id
        except (self.rbd.ImageNotFound, KeyError):
            return False
