"""What librbd takes (image names and sizes), checked before it is asked."""

import unicodedata

from oslo_utils import units

from rbdmig import exception

# librbd keeps an image's id in the object "rbd_id.<name>", and RADOS
# object names stop at 2048 bytes: longer names fail with ENAMETOOLONG
# (measured on Ceph 16.2: 2041 bytes is the longest that works).
MAX_BYTES = 2041
# The rbd CLI, os-brick and qemu write "pool/image@snapshot": librbd
# takes these characters in a name, but such an image cannot be named
# there (connection info says "pool/name").
SEPARATORS = ('/', '@')


def has_control(text):
    """Whether ``text`` holds a control character (NUL, newline, DEL...).

    The bindings hand names, paths and pools to librados and librbd as
    C strings, where a NUL ends them early.
    """
    return any(unicodedata.category(c) == 'Cc' for c in text)


def check_image_name(name):
    """Return ``name`` if it can name an RBD image, else say why not.

    The bindings hand names to librbd as C strings: a NUL would cut the
    name short and name *another* image (measured: ``'a\\x00b'`` creates,
    opens and removes ``'a'``), a lone surrogate raises
    UnicodeEncodeError, an empty name fails with EINVAL.

    :raises InvalidVolume: one sentence saying what is wrong with it.
    """
    if not isinstance(name, str) or not name:
        raise exception.InvalidVolume(
            reason='an RBD image name must be a non-empty string, not '
                   '%.40r.' % (name,))
    if has_control(name):
        raise exception.InvalidVolume(
            reason='image name %.40r holds a control character (NUL, '
                   'newline...), which librbd cannot take.' % name)
    try:
        size = len(name.encode('utf-8'))
    except UnicodeEncodeError:
        raise exception.InvalidVolume(
            reason='image name %.40r is not valid text (a lone '
                   'surrogate).' % name)
    if any(sep in name for sep in SEPARATORS):
        raise exception.InvalidVolume(
            reason='image name %.40r holds "/" or "@", which separate '
                   'pool, image and snapshot where images are named.'
                   % name)
    if size > MAX_BYTES:
        raise exception.InvalidVolume(
            reason='image name of %d bytes is longer than the %d librbd '
                   'takes.' % (size, MAX_BYTES))
    return name


def image_bytes(gib):
    """Return ``gib`` GiB in bytes, if an RBD image can be that large.

    The binding takes sizes as uint64 (OverflowError beyond, measured).

    :raises InvalidVolume: 16 EiB or more.
    """
    size = gib * units.Gi
    if size >= 1 << 64:
        raise exception.InvalidVolume(
            reason='%d GiB is more than an RBD image can hold (16 EiB).'
                   % gib)
    return size
