"""The Volume record, with Cinder's attribute names."""

import uuid

from rbdmig import exception


def check_size(size, what='size'):
    """Return ``size`` if it is a whole, positive number of GiB.

    Drivers check it too: a Cinder record reaches them unchecked, and a
    size that is a string would make ``size * units.Gi`` a gigabyte of
    text.

    :raises InvalidInput: a bool, a float, a string, zero or negative.
    """
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise exception.InvalidInput(
            reason='%s must be a positive whole number of GiB, not %.40r.'
                   % (what, size))
    return size


class Volume(object):
    """A plain volume record, attribute-compatible with Cinder's Volume.

    Drivers read only these attributes, so a ``cinder.objects.Volume`` can
    be passed wherever an :class:`Volume` is expected.

    :param id: the volume's UUID; a new one is made when omitted.
    :param size: the provisioned size in GiB (a positive integer).
    :param name: the backend name; ``volume-<id>`` when omitted.
    """

    FIELDS = ('id', 'name', 'size', 'status', 'host', 'migration_status',
              'volume_type_id', 'volume_attachment', 'provider_location',
              'display_name')

    def __init__(self, id=None, name=None, size=1, status='available',
                 host=None, migration_status=None, volume_type_id=None,
                 volume_attachment=None, provider_location=None,
                 display_name=None):
        check_size(size)
        self.id = id or str(uuid.uuid4())
        self.name = name or 'volume-%s' % self.id
        self.size = size
        self.status = status
        self.host = host
        self.migration_status = migration_status
        self.volume_type_id = volume_type_id
        self.volume_attachment = list(volume_attachment or [])
        self.provider_location = provider_location
        self.display_name = display_name

    def __getitem__(self, key):
        # Cinder code indexes volumes like dicts (volume['name']).
        if key not in self.FIELDS:
            raise KeyError(key)
        return getattr(self, key)

    def __repr__(self):
        return '<Volume %s size=%sG status=%s host=%s>' % (
            self.id, self.size, self.status, self.host)
