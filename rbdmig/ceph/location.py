"""location_info: how two RBD backends tell that they share a cluster."""

import collections

from oslo_utils import uuidutils

from rbdmig import exception

# Cinder's RBD driver formats unset options with '%s', so its location_info
# says 'None' where rbdmig says ''.  Both mean "unset" when parsed.
_UNSET = ('', 'None')

LocationInfo = collections.namedtuple(
    'LocationInfo', 'cluster_name ceph_conf fsid user pool')
LocationInfo.__doc__ = 'The five fields of ``location_info``, unset as None.'


def format_location(cluster_name, ceph_conf, fsid, user, pool):
    """Return ``cluster_name:ceph_conf:fsid:user:pool``, Cinder's format.

    Unset values become empty fields, never the text ``'None'``.
    """
    return ':'.join('' if value is None else str(value)
                    for value in (cluster_name, ceph_conf, fsid, user, pool))


def parse_location(text):
    """Parse a ``location_info`` string into a :class:`LocationInfo`.

    :raises InvalidInput: the string is missing, has other than five
        fields (a value holding ``:`` cannot be told apart from the
        separators, so it is refused rather than guessed at), names no
        pool, or its fsid is not a UUID.
    """
    if not text or not isinstance(text, str):
        raise exception.InvalidInput(reason='no location_info given.')
    fields = text.split(':')
    if len(fields) != len(LocationInfo._fields):
        raise exception.InvalidInput(
            reason='location_info %r has %d fields separated by ":", not '
                   '5 (cluster_name:ceph_conf:fsid:user:pool); a value '
                   'containing ":" cannot be parsed.' % (text, len(fields)))
    info = LocationInfo(*[None if f in _UNSET else f for f in fields])
    if not info.pool:
        raise exception.InvalidInput(
            reason='location_info %r names no pool.' % text)
    if not uuidutils.is_uuid_like(info.fsid):
        raise exception.InvalidInput(
            reason='location_info %r has no cluster fsid (a UUID).' % text)
    return info
