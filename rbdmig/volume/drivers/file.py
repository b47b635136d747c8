"""FileDriver: a non-Ceph backend keeping volumes as sparse raw files."""

import errno
import os
import socket
import unicodedata

from os_brick.initiator import connector as brick_connector
from oslo_config import cfg
from oslo_log import log as logging
from oslo_utils import units

from rbdmig import exception
from rbdmig import objects
from rbdmig.volume import driver

LOG = logging.getLogger(__name__)

FILE_OPTS = [
    cfg.StrOpt('file_volume_dir',
               default='/var/lib/rbdmig/volumes',
               help='The directory holding the volumes of a file backend, '
                    'one sparse raw file per volume, named after the '
                    'volume.  It is created at start-up if missing.'),
    cfg.StrOpt('file_volume_mode',
               default='0600',
               regex=r'^0?[0-7]{3}$',
               help='The permissions, in octal, of the volume files a file '
                    'backend creates in ``file_volume_dir``.'),
]

MODES = ('rb', 'r+b')


def _name_max(path):
    """The longest file name, in bytes, the file system of ``path`` takes."""
    try:
        return os.pathconf(path, 'PC_NAME_MAX')
    except (OSError, ValueError):
        return 255


def _truncate(fd, gib, path):
    """Set the file's size to ``gib`` GiB, or say in one sentence why not."""
    try:
        os.ftruncate(fd, gib * units.Gi)
    except (OSError, OverflowError) as err:
        why = getattr(err, 'strerror', None) or str(err)
        raise exception.InvalidVolume(
            reason=f'{gib} GiB is more than the file system of '
                   f'{os.path.dirname(path)} can hold ({why}).') from err


def _same_file(path, other):
    """Whether two names are links to one file (a missing one: no)."""
    try:
        return os.path.samefile(path, other)
    except FileNotFoundError:
        return False


def _open_nofollow(path, flags, mode=0o777):
    # Refuse a symlink swapped in after the name was checked.
    return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)


class FileDriver(driver.VolumeDriver):
    """Volumes as sparse raw files in one local directory.

    Like cinder's NFS driver on an already-mounted share: each volume is a
    file named after ``volume.name`` in ``file_volume_dir``, created thin,
    and attached on this host through os-brick's local connector.  It is
    the non-Ceph end of host-driven (generic) migrations.

    Version history:

    .. code-block:: none

        1.0.0 - Initial driver: create, delete, extend, stats, local
                connections and open_volume for host-driven copies.
        1.1.0 - Names with control characters, invalid text or longer
                than the file system's are refused in one sentence.
        1.2.0 - rename_volume (the generic copy retires its source before
                its last check); a migration's retired sources are not
                listed as volumes.
    """

    VERSION = '1.2.0'
    OPTS = FILE_OPTS
    # ftruncate() extends a new, empty file with zeros.
    CREATES_ZEROED_VOLUMES = True
    RENAMES_VOLUMES = True

    def __init__(self, *args, **kwargs):
        # An os-brick connector can be injected (tests); otherwise the
        # local one is built when first needed.
        self._connector = kwargs.pop('connector', None)
        super().__init__(*args, **kwargs)

    # -- set-up ------------------------------------------------------------

    @property
    def volume_dir(self):
        """The absolute, symlink-free path of ``file_volume_dir``."""
        configured = self.configuration.safe_get('file_volume_dir')
        if not configured:
            raise exception.InvalidConfiguration(
                reason='file_volume_dir is not set.')
        if '\0' in configured:
            raise exception.InvalidConfiguration(
                reason='file_volume_dir holds a NUL character.')
        return os.path.realpath(configured)

    def _file_mode(self):
        return int(self.configuration.safe_get('file_volume_mode'), 8)

    def do_setup(self, context):
        """Create ``file_volume_dir`` if it does not exist yet.

        :raises InvalidConfiguration: an option is invalid, or the
            directory cannot be created.
        """
        super().do_setup(context)
        path = self.volume_dir
        try:
            os.makedirs(path, mode=0o750, exist_ok=True)
        except OSError as err:
            raise exception.InvalidConfiguration(
                reason=f'file_volume_dir {path} cannot be created: '
                       f'{err.strerror}.') from err
        LOG.debug('File backend %(backend)s keeps volumes in %(dir)s',
                  {'backend': self._backend_name(), 'dir': path})

    def check_for_setup_error(self):
        """Raise InvalidConfiguration unless the directory is usable."""
        path = self.volume_dir
        if not os.path.isdir(path):
            raise exception.InvalidConfiguration(
                reason=f'file_volume_dir {path} is not a directory.')
        if not os.access(path, os.W_OK | os.X_OK):
            raise exception.InvalidConfiguration(
                reason=f'file_volume_dir {path} is not writable.')
        self._file_mode()  # a malformed mode fails here, not at create

    def _get_connector(self):
        if self._connector is None:
            # The local connector runs no commands, so it needs no root
            # helper.
            self._connector = brick_connector.InitiatorConnector.factory(
                'LOCAL', None)
        return self._connector

    # -- names and paths ---------------------------------------------------

    def local_path(self, volume):
        """Return the file of ``volume``, checked to lie in the directory.

        :raises InvalidVolume: the name is empty, hidden, contains a path
            separator or a control character (NUL, newline...), is not
            valid text, is longer than the file system's file names, or
            the file is a symlink.
        """
        name = volume['name']
        if (not isinstance(name, str) or not name or name.startswith('.')
                or os.sep in name or (os.altsep and os.altsep in name)
                or any(unicodedata.category(c) == 'Cc' for c in name)):
            raise exception.InvalidVolume(
                reason='volume name %.40r is not a plain file name.'
                       % (name,))
        try:
            length = len(name.encode('utf-8'))
        except UnicodeEncodeError:
            raise exception.InvalidVolume(
                reason='volume name %.40r is not valid text (a lone '
                       'surrogate).' % name) from None
        base = self.volume_dir
        if length > _name_max(base):
            raise exception.InvalidVolume(
                reason=f'volume name of {length} bytes is longer than the '
                       f'{_name_max(base)} file names may have in {base}.')
        path = os.path.join(base, name)
        # Names are already plain, but a symlink planted in the directory
        # could still lead out of it; follow nothing.
        if os.path.realpath(path) != path:
            raise exception.InvalidVolume(
                reason=f'volume file {path} is a symlink or leaves {base}.')
        return path

    def list_images(self):
        """Every regular file of the directory: ``[(name, size)]``.

        Files named ``<volume>.rbdmig-...`` are a generic copy's source
        retired before its removal (or given back by recovery), never
        volumes of their own, as in the RBD driver.
        """
        base = self.volume_dir
        return sorted((entry.name, entry.stat(follow_symlinks=False).st_size)
                      for entry in os.scandir(base)
                      if entry.is_file(follow_symlinks=False)
                      and '.rbdmig-' not in entry.name)

    def allocated_bytes(self, volume):
        return self.get_allocated_bytes(volume)

    def get_allocated_bytes(self, volume):
        """Return the bytes the volume's file occupies on disk.

        :raises VolumeNotFound: the file does not exist.
        """
        path = self.local_path(volume)
        try:
            return os.stat(path, follow_symlinks=False).st_blocks * 512
        except FileNotFoundError as err:
            raise exception.VolumeNotFound(name=volume['name']) from err

    # -- lifecycle ---------------------------------------------------------

    def create_volume(self, volume):
        """Create the volume as a sparse file of ``volume.size`` GiB.

        :raises VolumeExists: a file of that name is already there.
        """
        path = self.local_path(volume)
        size = objects.check_size(volume['size'])
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        try:
            fd = _open_nofollow(path, flags, self._file_mode())
        except FileExistsError as err:
            raise exception.VolumeExists(name=volume['name']) from err
        try:
            # The umask may have narrowed the mode given to open().
            os.fchmod(fd, self._file_mode())
            _truncate(fd, size, path)
        except BaseException:
            os.unlink(path)
            raise
        finally:
            os.close(fd)
        LOG.info('Created volume %(name)s (%(size)d GiB) at %(path)s',
                 {'name': volume['name'], 'size': volume['size'],
                  'path': path})

    def delete_volume(self, volume):
        """Delete the volume's file; a file already gone is success."""
        path = self.local_path(volume)
        try:
            os.unlink(path)
        except FileNotFoundError:
            LOG.info('Volume %s was already deleted', volume['name'])
            return
        LOG.info('Deleted volume %(name)s at %(path)s',
                 {'name': volume['name'], 'path': path})

    def volume_identity(self, volume):
        """The file's device and inode: one for all of its names.

        :raises VolumeNotFound: the volume's file does not exist.
        """
        try:
            found = os.stat(self.local_path(volume), follow_symlinks=False)
        except FileNotFoundError as err:
            raise exception.VolumeNotFound(name=volume['name']) from err
        return ('file', found.st_dev, found.st_ino)

    def rename_volume(self, volume, new_name):
        """Give the volume's file another name, never over another file.

        A hard link, then the old name's removal: rename(2) would replace
        a file of the new name.  Cut short between the two, both names
        are left on one file, and calling again finishes the rename.
        Open descriptors keep the file (this backend cannot tell who has
        it open); new opens by the old name fail.

        :raises VolumeNotFound: the volume's file does not exist.
        :raises VolumeExists: another file has the new name.
        """
        path = self.local_path(volume)
        target = self.local_path({'name': new_name})
        try:
            os.link(path, target, follow_symlinks=False)
        except FileNotFoundError as err:
            raise exception.VolumeNotFound(name=volume['name']) from err
        except FileExistsError as err:
            if not _same_file(path, target):
                raise exception.VolumeExists(name=new_name) from err
        except OSError as err:
            if err.errno not in (errno.EPERM, errno.ENOTSUP, errno.EMLINK):
                raise
            # No hard links on this file system: look, then rename (a
            # file appearing in between would be replaced).
            if os.path.lexists(target):
                raise exception.VolumeExists(name=new_name) from err
            os.rename(path, target)
            return
        os.unlink(path)
        LOG.info('Renamed volume %(old)s to %(new)s',
                 {'old': volume['name'], 'new': new_name})

    def extend_volume(self, volume, new_size):
        """Grow the volume's file to ``new_size`` GiB, keeping it sparse.

        :raises VolumeNotFound: the file does not exist.
        :raises InvalidInput: ``new_size`` is smaller than the file.
        """
        path = self.local_path(volume)
        new_bytes = objects.check_size(new_size, 'the new size') * units.Gi
        try:
            fd = _open_nofollow(path, os.O_WRONLY)
        except FileNotFoundError as err:
            raise exception.VolumeNotFound(name=volume['name']) from err
        try:
            current = os.fstat(fd).st_size
            if new_bytes < current:
                raise exception.InvalidInput(
                    reason=f'volume {volume["name"]} cannot shrink from '
                           f'{current} to {new_bytes} bytes.')
            _truncate(fd, new_size, path)
        finally:
            os.close(fd)
        LOG.info('Extended volume %(name)s to %(size)d GiB',
                 {'name': volume['name'], 'size': new_size})

    # -- stats -------------------------------------------------------------

    def _update_volume_stats(self):
        super()._update_volume_stats()
        path = self.volume_dir
        try:
            fs = os.statvfs(path)
        except OSError as err:
            raise exception.VolumeBackendAPIException(
                data=f'cannot read the capacity of {path}: '
                     f'{err.strerror}.') from err
        self._stats.update({
            'storage_protocol': 'file',
            'total_capacity_gb': round(fs.f_frsize * fs.f_blocks / units.Gi,
                                       2),
            'free_capacity_gb': round(fs.f_frsize * fs.f_bavail / units.Gi,
                                      2),
            'provisioned_capacity_gb': round(
                self._provisioned_bytes(path) / units.Gi, 2),
            'thin_provisioning_support': True,
            'thick_provisioning_support': False,
            'multiattach': False,
            'location_info': f'file:{socket.gethostname()}:{path}',
        })

    @staticmethod
    def _provisioned_bytes(path):
        # Apparent sizes of the volume files: what thin provisioning
        # has promised, as opposed to what the file system has used.
        with os.scandir(path) as entries:
            return sum(entry.stat(follow_symlinks=False).st_size
                       for entry in entries
                       if entry.is_file(follow_symlinks=False)
                       and not entry.name.startswith('.'))

    # -- connections and handles -------------------------------------------

    def initialize_connection(self, volume, connector):
        """Return os-brick connection info for the local connector."""
        return {'driver_volume_type': 'local',
                'data': {'device_path': self.local_path(volume)}}

    def open_volume(self, context, volume, mode='rb'):
        """Attach the volume locally and open its file.

        :param mode: ``'rb'`` to read, ``'r+b'`` to read and write.
        :returns: a binary file object, closed by :meth:`close_volume`.
        :raises InvalidInput: ``mode`` is neither ``'rb'`` nor ``'r+b'``.
        :raises VolumeNotFound: the volume's file does not exist.
        """
        if mode not in MODES:
            raise exception.InvalidInput(
                reason=f'mode {mode!r} is not one of {", ".join(MODES)}.')
        props = self.initialize_connection(volume, {})['data']
        brick = self._get_connector()
        device = brick.connect_volume(props)
        try:
            return open(device['path'], mode, opener=_open_nofollow)
        except FileNotFoundError as err:
            brick.disconnect_volume(props, device)
            raise exception.VolumeNotFound(name=volume['name']) from err
        except BaseException:
            brick.disconnect_volume(props, device)
            raise

    def close_volume(self, context, volume, handle):
        """Close a handle from :meth:`open_volume` and detach the volume."""
        props = self.initialize_connection(volume, {})['data']
        try:
            handle.close()
        finally:
            self._get_connector().disconnect_volume(
                props, {'type': 'local', 'path': props['device_path']})
