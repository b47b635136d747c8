"""What every copy method does to images: layout, extents, removal."""

from oslo_log import log as logging

LOG = logging.getLogger(__name__)


def create_args(rbd, image):
    """Return the ``create`` keyword arguments reproducing ``image``'s layout.

    Features a new image cannot be created with (set by operations, or by
    a data pool) are left out; order and striping are kept.
    """
    not_creatable = (rbd.RBD_FEATURE_OPERATIONS | rbd.RBD_FEATURE_MIGRATING |
                     rbd.RBD_FEATURE_NON_PRIMARY | rbd.RBD_FEATURE_DATA_POOL)
    features = image.features() & ~not_creatable
    args = {'features': features, 'order': image.stat()['order']}
    if features & rbd.RBD_FEATURE_STRIPINGV2:
        args.update(stripe_unit=image.stripe_unit(),
                    stripe_count=image.stripe_count())
    return args


def data_extents(image, size):
    """Return the sorted, merged ``(offset, length)`` data extents.

    From librbd ``diff_iterate`` over the whole image, parent data
    included (a clone's data is its own plus its parent's).
    """
    found = []

    def collect(offset, length, exists):
        if exists:
            if found and found[-1][0] + found[-1][1] == offset:
                found[-1] = (found[-1][0], found[-1][1] + length)
            else:
                found.append((offset, length))
        return 0

    image.diff_iterate(0, size, None, collect, include_parent=True,
                       whole_object=False)
    return found


def copy_metadata(source, destination):
    """Copy the image metadata (``rbd image-meta``) of one open image.

    Cinder keeps QoS settings there (``conf_rbd_qos_*``); ``Image.copy``
    and ``deep_copy`` copy it themselves, a copy by extents must too.
    """
    for key, value in source.metadata_list():
        destination.metadata_set(key, value)


def remove(rbd, ioctx, name):
    """Remove an image and its snapshots; an image already gone is fine.

    Only for images this code created: it unprotects and deletes
    snapshots without asking.
    """
    try:
        with rbd.Image(ioctx, name) as image:
            for snap in list(image.list_snaps()):
                if image.is_protected_snap(snap['name']):
                    image.unprotect_snap(snap['name'])
                image.remove_snap(snap['name'])
    except rbd.ImageNotFound:
        return
    try:
        rbd.RBD().remove(ioctx, name)
    except rbd.ImageNotFound:
        pass
