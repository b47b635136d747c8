"""Recovery of :func:`manager.migrate`'s generic moves, which keep no record.

Each step of such a move leaves its source in a place that says how far
it got, so no record is needed:

* the source under its name: the move died before retiring it (or never
  began).  The source is the volume (:data:`phases.ROLL_BACK`, or
  :data:`phases.RELEASE` when nothing of the move is left);
* the source under its retired name (``<name>.rbdmig-generic.retired``,
  :data:`manager.TAG`): it died after the copy and before the source's
  removal began, which only follows the last checks.  The source gets its
  name back and is the volume (:data:`phases.RESTORE`);
* under both (a rename cut short inside the backend): the driver's rename
  finishes it when both names lead to one volume; two volumes are left
  for a person to tell apart;
* under neither, or half-removed (RBD: it lists but no longer opens): its
  removal had begun, which the move begins only once the copy read as
  the source.  The copy is the volume (:data:`phases.COMPLETE`).

Unless the copy is the volume, a volume of its name on the destination
is removed only if it is proven to hold nothing the source does not.
"""

import contextlib
import dataclasses

from oslo_log import log as logging
from oslo_utils import units

from rbdmig import exception
from rbdmig.migration import compare
from rbdmig.migration import copy as copy_engine
from rbdmig.migration import fence
from rbdmig.migration import manager
from rbdmig.migration import phases

LOG = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Recovery:
    """What :func:`recover` found and did.

    :ivar decision: :data:`phases.RELEASE` (nothing of a move was left),
        :data:`phases.ROLL_BACK` (the source was under its name; the
        move's copy removed, unless :attr:`kept` says otherwise),
        :data:`phases.RESTORE` (the source got its name back; the copy
        likewise) or :data:`phases.COMPLETE` (the copy is the volume).
    :ivar volume: the volume's record where it now is: ``volume`` as
        given, or (complete) a record of it on the destination.
    :ivar done: what was done, a sentence each, in order.
    :ivar kept: what was left alone and why, a sentence each.
    """

    decision: str
    volume: object
    done: tuple = ()
    kept: tuple = ()


def recover(volume, src_driver, dst_driver):
    """Put the volume of a killed :func:`manager.migrate` in one place.

    Call it with the volume and drivers the killed move had, once its
    process is gone (a move still running would be undone under it, and,
    caught inside its source's removal, its client blocklisted) and
    before anything else touches the volume; calling it again is safe.
    A volume of its name on the destination is removed only when it is
    not the source itself (:meth:`volume_identity`), has the source's
    size (or its record's, a tail of zeros) and every sector of it reads
    as the source's or as zeros: a copy cut short, or a complete one.
    Anything else is kept, :attr:`Recovery.kept` says why.

    :returns: a :class:`Recovery`.
    :raises MigrationError: a backend cannot say whether the volume
        exists, the destination given is where the source is, or two
        distinct volumes have the source's two names: nothing was
        changed.
    :raises VolumeNotFound: the volume is in neither place.
    """
    with manager.sharing(src_driver, dst_driver):
        return _Recovery(volume, src_driver, dst_driver).run()


class _Recovery(object):

    def __init__(self, volume, src, dst):
        self.volume, self.src, self.dst = volume, src, dst
        self.source = fence.Source(src, volume, manager.TAG)
        self.host = manager.destination_host(dst)['host']
        self.copy = manager.moved_record(volume, {'host': self.host}, None)
        self.done, self.kept = [], []

    def run(self):
        named, retired, held = self._look()
        if held == phases.PRESENT and named == phases.PRESENT:
            self._refuse_if_same()
        if named == retired == phases.MISSING:
            if held != phases.PRESENT:
                raise exception.VolumeNotFound(name=self.volume.name)
            return self._complete()
        decision = phases.ROLL_BACK if held == phases.PRESENT else (
            phases.RELEASE)
        if retired == phases.PRESENT:
            self._give_back(named)
            decision = phases.RESTORE
        if held == phases.PRESENT:
            self._discard_copy()
        for line in self.done + self.kept:
            LOG.info('Recovering the migration of %(vol)s: %(line)s',
                     {'vol': self.volume.id, 'line': line})
        return Recovery(decision, self.volume, tuple(self.done),
                        tuple(self.kept))

    def _look(self):
        """``(source, retired source, copy)``, each present or missing."""
        found = (fence.presence(self.src, self.volume),
                 fence.presence(self.src, self.source.retired),
                 fence.presence(self.dst, self.copy))
        unknown = [what for what, seen in zip(
            ('source', 'retired source', 'copy'), found)
            if seen == phases.UNKNOWN]
        if unknown:
            self._refuse('its backends could not say whether its %s exists'
                         % ' and '.join(unknown))
        return found

    def _refuse(self, why):
        raise exception.MigrationError(
            volume=self.volume.id,
            reason='%s; nothing was changed, recover it once that is put '
                   'right.' % why)

    def _refuse_if_same(self):
        if self._same() is True:
            self._refuse('the destination given (%s) holds the source '
                         'itself, under its name' % self.host)

    def _same(self):
        """Whether the copy is the source (None: a driver cannot tell)."""
        mine = self.src.volume_identity(self.volume)
        theirs = self.dst.volume_identity(self.copy)
        if mine is None or theirs is None:
            return None
        return mine == theirs

    def _complete(self):
        # Half-removed (RBD: it lists, but no longer opens), or gone;
        # its remover's locks are not worth waiting for, it is gone.
        self.source.cut_off_remover()
        self.src.delete_volume(self.source.retired)
        line = ('The removal of its source %s had begun, after the copy '
                'on %s read as it: it was finished, and the copy is the '
                'volume.' % (self.source.retired.name, self.host))
        LOG.info('Recovered the migration of %(vol)s: %(line)s',
                 {'vol': self.volume.id, 'line': line})
        return Recovery(phases.COMPLETE, self.copy, (line,))

    def _give_back(self, named):
        """The retired source gets its name back; under both names, the
        driver's rename finishes a rename cut short (one volume)."""
        retired = self.source.retired
        try:
            self.src.rename_volume(retired, self.volume.name)
        except exception.VolumeExists as err:
            self._refuse('two distinct volumes are named %s and %s: its '
                         'source and another; compare them, rename the one '
                         'not holding its data aside, and recover again (%s)'
                         % (self.volume.name, retired.name, err))
        if named == phases.PRESENT:
            self.done.append('A rename of its source cut short was '
                             'finished: it is under its name %s only.'
                             % self.volume.name)
        else:
            self.done.append('Its source got its name %s back (it was '
                             'retired as %s).'
                             % (self.volume.name, retired.name))

    def _discard_copy(self):
        why = self._why_kept()
        if why:
            self.kept.append('%s on %s was left alone: %s.'
                             % (self.volume.name, self.host, why))
            return
        self.dst.delete_volume(self.copy)
        self.done.append('Its copy on %s, which held nothing the source '
                         'does not, was removed.' % self.host)

    def _why_kept(self):
        """Why the copy may not be removed (None: removing it loses
        nothing)."""
        same = self._same()
        if same is None:
            return ('its driver or the source\'s cannot tell whether it '
                    'is the source itself')
        if same:
            return 'it is the source itself'
        with contextlib.ExitStack() as stack:
            mine = self.src.open_volume(None, self.volume, 'rb')
            stack.callback(self.src.close_volume, None, self.volume, mine)
            theirs = self.dst.open_volume(None, self.copy, 'rb')
            stack.callback(self.dst.close_volume, None, self.copy, theirs)
            size = copy_engine.size_of(mine)
            held = copy_engine.size_of(theirs)
            # The move sizes its copy by the record, never below the image.
            if held not in (size, (self.volume.size or 0) * units.Gi) or (
                    held < size):
                return ('it holds %d bytes, its source %d: not a copy a '
                        'migration made' % (held, size))
            at = compare.first_foreign_byte(mine, theirs, size)
            if at is None and held > size:
                at = compare.first_data_past(theirs, size, held)
        if at is not None:
            return ('at byte %d it holds data its source does not (written '
                    'there since, or not a copy a migration made); remove '
                    'it by hand if it is not needed' % at)
        return None
