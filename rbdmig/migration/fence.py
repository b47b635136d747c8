"""The generic copy's source: refused unless whole, retired before it goes."""

from oslo_log import log as logging
from oslo_utils import units

from rbdmig import exception
from rbdmig import objects
from rbdmig.migration import compare
from rbdmig.migration import phases

LOG = logging.getLogger(__name__)


def retired_name(name, tag):
    """The name a source called ``name`` has from its retirement to its
    removal; ``tag`` tells one move's from another's."""
    return '%s.rbdmig-%s.retired' % (name, tag)


def named(volume, name):
    """``volume`` under another ``name`` (its retired one)."""
    fields = {f: getattr(volume, f, None) for f in objects.Volume.FIELDS}
    fields['name'] = name
    return objects.Volume(**fields)


def presence(drv, volume):
    """Return :data:`phases.PRESENT`, ``MISSING`` or ``UNKNOWN`` for
    ``volume`` on ``drv``."""
    try:
        drv.close_volume(None, volume, drv.open_volume(None, volume))
    except exception.VolumeNotFound:
        return phases.MISSING
    except Exception as err:
        LOG.warning('Cannot tell whether %(vol)s exists: %(err)s',
                    {'vol': volume.name, 'err': err})
        return phases.UNKNOWN
    return phases.PRESENT


def check_whole(drv, volume):
    """Refuse a source that a copy of its blocks would not hold whole.

    Called before anything is built.  A source whose driver cannot
    rename it is refused too: its last check could not be made final.

    :raises MigrationRefused: it has snapshots or clones, its image holds
        more than its record says, or its driver cannot rename it.
    """
    def refuse(reason):
        raise exception.MigrationRefused(volume=volume.id, reason=reason)

    if not getattr(drv, 'RENAMES_VOLUMES', False):
        refuse('its backend cannot rename it, so a copy through this host '
               'could not keep clients off it between its last check and '
               'its removal.')
    why = drv.uncopied_parts(volume)
    if why:
        refuse('%s, which a copy through this host would not carry over, '
               'and removing the source would lose.  Move it where they '
               'go with it (an assisted move within one cluster, '
               'rbd_migration_method deep_copy), or delete them first if '
               'they are not needed.' % why)
    size = compare.volume_bytes(drv, volume)
    if size > volume.size * units.Gi:
        # The record is the authority on the volume (Cinder's row, under
        # Cinder; rbdmig's database, on its own): a copy sized by it
        # would drop what lies past it, and one sized by the image would
        # hold more than the record says.  Neither is for a copy to
        # decide.
        refuse('its image holds %d bytes (%.2f GiB) but its record says '
               '%d GiB: the record and the image disagree (the image was '
               'grown behind it, by rbd resize or another tool).  Set the '
               'record\'s size to %d GiB (or shrink the image, if what lies '
               'past %d GiB is not needed), then migrate it again.' % (
                   size, size / units.Gi, volume.size,
                   -(-size // units.Gi), volume.size))


class Source(object):
    """A generic copy's source, under its name or its retired one.

    Between a check of the source and its removal, a client could open
    it, write and close it, leaving no trace but its data.  The window
    is closed as the assisted engine closes it (:mod:`rbdmig.ceph.
    migrate`): the source is renamed to a retired name (:meth:`retire`),
    out of the reach of every client that opens it by name, then checked
    a last time (:meth:`check`), and only then removed; on any failure
    it gets its name back (:meth:`give_back`).

    :param drv: its driver; ``volume``: the source under its name.
    :param tag: the move's, in the retired name (:func:`retired_name`).
    """

    def __init__(self, drv, volume, tag):
        self.drv, self.volume = drv, volume
        self.retired = named(volume, retired_name(volume.name, tag))

    def retire(self):
        """Rename the source to its retired name.

        :raises VolumeNotFound: it is not under its name.
        :raises VolumeExists: its retired name is taken.
        """
        self.drv.rename_volume(self.volume, self.retired.name)

    def check(self, dst, copy):
        """The last checks on the retired source, out of clients' reach.

        In this order: a client that opened it before its retirement
        could still write, so there must be none; then nothing can change
        it any more, and what it holds is what the copy must read.

        :raises MigrationError: a client holds it, or snapshots or clones
            appeared.
        :raises CopyError: the copy does not read as it does.
        """
        retired = self.retired
        if self.drv.volume_in_use(retired):
            raise exception.MigrationError(
                volume=retired.id,
                reason='a client had it open as it was taken out of '
                       'clients\' reach, and may have written to it since '
                       'the copy; the source is intact.')
        why = self.drv.uncopied_parts(retired)
        if why:
            raise exception.MigrationError(
                volume=retired.id,
                reason='%s now, made during the copy, which the copy does '
                       'not carry over; the source is intact.' % why)
        compare.check_copy(self.drv, retired, dst, copy)

    def give_back(self):
        """Give the retired source its name back, if it is retired.

        :returns: True if the source is under its name now; False if it
            is under neither name (the caller then keeps the copy).
        :raises: whatever the rename raised (VolumeExists: another image
            took the name meanwhile); the source is retired still.
        """
        if presence(self.drv, self.retired) == phases.MISSING:
            # Never renamed, or given back already.
            return presence(self.drv, self.volume) == phases.PRESENT
        # Present, or its backend did not answer: the rename says which.
        self.drv.rename_volume(self.retired, self.volume.name)
        return True

    def found(self):
        """:func:`presence` of the source under its name, once a retired
        one (its mover died) got its name back; UNKNOWN also when it
        cannot get it back (another image took it, or its backend did not
        answer)."""
        retired = presence(self.drv, self.retired)
        if retired == phases.UNKNOWN:
            return retired
        if retired == phases.PRESENT:
            try:
                self.drv.rename_volume(self.retired, self.volume.name)
            except Exception as err:
                LOG.error('The source of %(vol)s was left retired as '
                          '%(retired)s, and cannot get its name back '
                          '(%(err)s): left as it is.',
                          {'vol': self.volume.id,
                           'retired': self.retired.name, 'err': err})
                return phases.UNKNOWN
            LOG.info('The source %(retired)s got its name %(name)s back.',
                     {'retired': self.retired.name,
                      'name': self.volume.name})
        return presence(self.drv, self.volume)

    def cut_off_remover(self):
        """Break a dead remover's locks on the half-removed retired source.

        Only once its remover is known gone, and only when the source no
        longer opens by name (half-removed: only a remover holds it):
        a whole retired source's lock is a client's, and recovery must
        find it and keep the source, not blocklist that client.

        :returns: the holders cut off (none when it is whole or gone, or
            when they could not be: the removal then waits, as before).
        """
        if presence(self.drv, self.retired) != phases.MISSING:
            return []
        try:
            return self.drv.fence_writers(self.retired)
        except exception.VolumeNotFound:
            return []
        except Exception as err:  # noqa: BLE001 - only a wait is at stake
            LOG.warning('Could not break the locks on %(name)s (%(err)s): '
                        'its removal may wait for them to lapse.',
                        {'name': self.retired.name, 'err': err})
            return []

    def given_back(self):
        """Whether the source is under its name, not retired."""
        return (presence(self.drv, self.retired) == phases.MISSING and
                presence(self.drv, self.volume) == phases.PRESENT)

    def give_back_alone(self):
        """Its copy gone, give a retired source its name back (the only
        complete copy left is where the record names the volume).

        :returns: what was done, in words, as a clause ('' if nothing).
        """
        if presence(self.drv, self.retired) != phases.PRESENT:
            return ''
        try:
            self.drv.rename_volume(self.retired, self.volume.name)
        except Exception as err:
            LOG.exception('Could not give %s its name back.',
                          self.retired.name)
            return (', whole under its retired name %s (giving it its '
                    'name back failed: %s)' % (self.retired.name, err))
        return ', under its name again (it had been retired)'
