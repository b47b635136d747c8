"""The file-like RBD handle: os-brick's wrapper with its gaps filled."""

import io

from os_brick.initiator import linuxrbd
from oslo_log import log as logging

from rbdmig import exception
from rbdmig.ceph import images

LOG = logging.getLogger(__name__)

MODES = ('rb', 'r+b')


class RBDHandle(linuxrbd.RBDVolumeIOWrapper):
    """An ``io.RawIOBase`` over one open ``rbd.Image``.

    Builds on os-brick's ``RBDVolumeIOWrapper`` and fixes what it gets
    wrong for a copy engine: ``readable()``/``writable()`` answer by the
    mode, ``write`` and ``readinto`` return byte counts, ``seek`` returns
    the new offset, writing past the end raises instead of silently
    failing in librbd, and ``close`` also releases the cluster connection.
    :meth:`extents` lists the ranges that hold data, so copies skip holes.

    :param image_meta: an ``os_brick`` ``RBDImageMetadata``.
    :param mode: ``'rb'`` or ``'r+b'``.
    :param on_close: called once after the image is closed (e.g. to shut
        the connection the image was opened on); also settable later as
        the ``on_close`` attribute.
    """

    def __init__(self, image_meta, mode='rb', on_close=None):
        if mode not in MODES:
            raise exception.InvalidInput(
                reason='mode %r is not one of %s.' % (mode, ', '.join(MODES)))
        super().__init__(image_meta)
        self.mode = mode
        self.on_close = on_close
        self._size = int(self.rbd_image.size())

    def readable(self):
        self._checkClosed()
        return True

    def writable(self):
        self._checkClosed()
        return self.mode == 'r+b'

    def seekable(self):
        self._checkClosed()
        return True

    def size(self):
        """Return the image's size in bytes."""
        return self._size

    def _span(self, length):
        """Return how many of ``length`` bytes lie before the end."""
        return max(0, min(length, self._size - self._offset))

    def read(self, size=-1):
        self._checkClosed()
        if size is None or size < 0:
            size = self._size
        length = self._span(size)
        if not length:
            # rbd images, unlike posix files, fail reads past their end.
            return b''
        data = self.rbd_image.read(self._offset, length)
        self._offset += len(data)
        return data

    def readinto(self, buffer):
        data = self.read(len(buffer))
        n = len(data)
        memoryview(buffer).cast('B')[:n] = data
        return n

    def write(self, data):
        self._checkClosed()
        if not self.writable():
            raise io.UnsupportedOperation('handle was opened read-only')
        length = len(memoryview(data).cast('B'))
        if self._offset + length > self._size:
            raise exception.InvalidInput(
                reason='writing %d bytes at offset %d passes the end of '
                       'image %s (%d bytes).' % (
                           length, self._offset, self.rbd_image.get_name(),
                           self._size))
        if not isinstance(data, bytes):
            # librbd's binding takes bytes only.
            data = bytes(data)
        written = self.rbd_image.write(data, self._offset)
        if written != length:
            raise exception.VolumeBackendAPIException(
                data='short write to %s: %s of %d bytes' % (
                    self.rbd_image.get_name(), written, length))
        self._offset += length
        return length

    def read_at(self, offset, length):
        """Return up to ``length`` bytes at ``offset``; the offset stays.

        librbd reads at an offset and releases the GIL, so several
        threads may call this at once (``copy_volume``'s queue depth).
        """
        self._checkClosed()
        length = max(0, min(length, self._size - offset))
        if not length:
            return b''
        return self.rbd_image.read(offset, length)

    def write_at(self, data, offset):
        """Write all of ``data`` at ``offset``; return the byte count.

        Safe from several threads at once, as :meth:`read_at`.
        """
        self._checkClosed()
        if not self.writable():
            raise io.UnsupportedOperation('handle was opened read-only')
        length = len(memoryview(data).cast('B'))
        if offset + length > self._size:
            raise exception.InvalidInput(
                reason='writing %d bytes at offset %d passes the end of '
                       'image %s (%d bytes).' % (
                           length, offset, self.rbd_image.get_name(),
                           self._size))
        if not isinstance(data, bytes):
            data = bytes(data)  # librbd's binding takes bytes only
        written = self.rbd_image.write(data, offset)
        if written != length:
            raise exception.VolumeBackendAPIException(
                data='short write to %s: %s of %d bytes' % (
                    self.rbd_image.get_name(), written, length))
        return length

    def zero_at(self, offset, length):
        """Make ``length`` bytes at ``offset`` read as zeros, deallocated.

        librbd's ``write_zeroes`` removes whole objects and zeroes parts
        of others.  ``discard`` would not do: librbd skips discarding
        parts of an object (``rbd_skip_partial_discard``), which then
        keep their old data.
        """
        self._checkClosed()
        if not self.writable():
            raise io.UnsupportedOperation('handle was opened read-only')
        if offset < 0 or length < 0 or offset + length > self._size:
            raise exception.InvalidInput(
                reason='zeroing %d bytes at offset %d passes the end of '
                       'image %s (%d bytes).' % (
                           length, offset, self.rbd_image.get_name(),
                           self._size))
        self.rbd_image.write_zeroes(offset, length)

    def seek(self, offset, whence=io.SEEK_SET):
        self._checkClosed()
        super().seek(offset, whence)
        return self._offset

    def flush(self):
        # os-brick's flush tests a module-level ``rbd``; this one trusts
        # only the image it holds.
        self._checkClosed()
        if self.mode == 'r+b':
            self.rbd_image.flush()

    def extents(self):
        """Return sorted ``(offset, length)`` ranges that hold data.

        Includes data inherited from a parent image (clones), so a copy
        driven by these extents is complete.
        """
        self._checkClosed()
        return images.data_extents(self.rbd_image, self._size)

    def close(self):
        if self.closed:
            return
        try:
            # Flushes a writable image first; marks the handle closed even
            # when the flush fails.
            io.RawIOBase.close(self)
        finally:
            try:
                self.rbd_image.close()
            finally:
                if self.on_close is not None:
                    self.on_close()
