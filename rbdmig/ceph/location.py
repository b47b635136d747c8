"""location_info: how two RBD backends tell that they share a cluster."""

import collections
import collections.abc
import reprlib
import uuid

from rbdmig import exception
from rbdmig.ceph import limits

# Cinder's RBD driver formats unset options with '%s', so its location_info
# says 'None' where rbdmig says ''.  Both mean "unset" when parsed.
_UNSET = ('', 'None')
# Longer than any real one: a conf path is at most PATH_MAX (4096).
MAX_LENGTH = 8192

LocationInfo = collections.namedtuple(
    'LocationInfo', 'cluster_name ceph_conf fsid user pool')
LocationInfo.__doc__ = 'The five fields of ``location_info``, unset as None.'


def format_location(cluster_name, ceph_conf, fsid, user, pool):
    """Return ``cluster_name:ceph_conf:fsid:user:pool``, Cinder's format.

    Unset values become empty fields, never the text ``'None'``.
    """
    return ':'.join('' if value is None else str(value)
                    for value in (cluster_name, ceph_conf, fsid, user, pool))


def from_host(host):
    """Return the :class:`LocationInfo` of a migration's destination.

    ``host`` is what Cinder hands ``migrate_volume``: ``{'host': ...,
    'capabilities': <the destination's stats>}``; here it may be anything,
    and anything but a Ceph backend's is refused.  Values quoted in
    errors are shortened (reprlib), never echoed whole.

    :raises InvalidInput: ``host`` or its capabilities are not dicts, the
        storage protocol is not ``ceph``, or the location_info is refused
        by :func:`parse_location`.
    """
    if not isinstance(host, collections.abc.Mapping):
        raise exception.InvalidInput(
            reason='the destination host is a %s, not a dict.'
                   % type(host).__name__)
    caps = host.get('capabilities') or {}
    if not isinstance(caps, collections.abc.Mapping):
        raise exception.InvalidInput(
            reason='the destination\'s capabilities are a %s, not a dict.'
                   % type(caps).__name__)
    protocol = caps.get('storage_protocol')
    if not isinstance(protocol, str) or protocol.lower() != 'ceph':
        raise exception.InvalidInput(
            reason='the destination is not a Ceph backend (protocol %s).'
                   % reprlib.repr(protocol))
    return parse_location(caps.get('location_info'))


def parse_location(text):
    """Parse a ``location_info`` string into a :class:`LocationInfo`.

    Everything is checked before any of it is used: the values are
    handed to librados as C strings, where a NUL would silently cut a
    pool or conf name short.  Error messages name the faulty field but
    never repeat the text, which is not this backend's and may be
    anything.

    :returns: the fields, unset ones as None, the fsid in canonical form.
    :raises InvalidInput: the value is not a non-empty string; it is
        longer than MAX_LENGTH, holds control characters (NUL, newline)
        or text UTF-8 cannot encode; it has other than five fields (a
        value holding ``:`` cannot be told apart from the separators, so
        it is refused rather than guessed at); it names no pool; or its
        fsid is not a UUID.
    """
    if not isinstance(text, str) or not text:
        raise exception.InvalidInput(
            reason='no location_info given (a %s).' % type(text).__name__)
    if len(text) > MAX_LENGTH:
        raise exception.InvalidInput(
            reason='location_info of %d characters is longer than any '
                   'Ceph location (%d).' % (len(text), MAX_LENGTH))
    fields = text.split(':')
    if len(fields) != len(LocationInfo._fields):
        raise exception.InvalidInput(
            reason='location_info has %d fields separated by ":", not '
                   '5 (cluster_name:ceph_conf:fsid:user:pool); a value '
                   'containing ":" cannot be parsed.' % len(fields))
    for name, field in zip(LocationInfo._fields, fields):
        _check_field(name, field)
    info = LocationInfo(*[None if f in _UNSET else f for f in fields])
    if not info.pool:
        raise exception.InvalidInput(
            reason='location_info names no pool.')
    try:
        fsid = str(uuid.UUID(info.fsid or ''))
    except ValueError:
        raise exception.InvalidInput(
            reason='location_info has no cluster fsid (a UUID).')
    return info._replace(fsid=fsid)


def _check_field(name, field):
    if limits.has_control(field):
        raise exception.InvalidInput(
            reason='the %s field of location_info holds a control '
                   'character (NUL, newline...).' % name)
    try:
        field.encode('utf-8')
    except UnicodeEncodeError:
        raise exception.InvalidInput(
            reason='the %s field of location_info is not valid text '
                   '(a lone surrogate).' % name)
