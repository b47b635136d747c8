"""The exception tree: every error rbdmig raises derives from RbdmigError."""

from rbdmig import redact


class RbdmigError(Exception):
    """Base class of rbdmig's errors.

    Subclasses set ``message`` to a format string; keyword arguments given
    to the constructor fill it in, so every error reads as one sentence.
    Secrets are masked out of it (:func:`rbdmig.redact.mask`): the
    message is logged, printed by the CLI and shown to Cinder's users.
    """

    message = 'An unknown error occurred.'

    def __init__(self, message=None, **kwargs):
        self.kwargs = kwargs
        if message is None:
            try:
                message = self.message % kwargs
            except (KeyError, TypeError):
                # A wrong format must not hide the error being raised.
                message = self.message
        self.msg = message = redact.mask(message)
        super().__init__(message)


class InvalidConfiguration(RbdmigError):
    message = 'Invalid configuration: %(reason)s'


class InvalidInput(RbdmigError):
    message = 'Invalid input: %(reason)s'


class InvalidVolume(RbdmigError):
    message = 'Invalid volume: %(reason)s'


class VolumeInUse(InvalidVolume):
    message = 'Volume %(volume)s is in use: %(reason)s'


class VolumeNotFound(RbdmigError):
    message = 'Volume %(name)s could not be found.'


class VolumeExists(RbdmigError):
    message = 'Volume %(name)s already exists.'


class VolumeBackendAPIException(RbdmigError):
    message = 'Bad or unexpected response from the storage backend: %(data)s'


class CopyError(RbdmigError):
    message = 'Copying volume data failed: %(reason)s'


class MigrationError(RbdmigError):
    message = 'Migration of volume %(volume)s failed: %(reason)s'


class MigrationRefused(MigrationError):
    """Unsafe to move now, by any path: no fallback copy may follow."""

    message = ('Migration of volume %(volume)s refused: %(reason)s The '
               'source is intact and nothing was moved.')


class SandboxError(RbdmigError):
    message = 'Ceph sandbox: %(reason)s'


class ClusterUnreachable(VolumeBackendAPIException):
    message = ('Cannot connect to Ceph %(cluster)s (gave up after '
               '%(seconds).1f s): %(reason)s')


class PoolNotFound(VolumeBackendAPIException):
    message = 'Pool %(pool)s does not exist in Ceph %(cluster)s.'


class InvalidTransition(RbdmigError):
    message = 'Cannot change %(field)s from %(old)s to %(new)s.'


class ConcurrentUpdate(RbdmigError):
    message = ('%(what)s was changed by another process: it is no longer '
               '%(expected)s.')


class MigrationTakenOver(RbdmigError):
    message = ('Migration %(id)s is run by %(holder)s now, not by '
               '%(runner)s: its lease lapsed and another recovery took it '
               'over, so this process changes nothing more of it.')


class MigrationInProgress(RbdmigError):
    message = 'Volume %(volume)s is already being migrated (%(holder)s).'


class MigrationNotFound(RbdmigError):
    message = 'Migration %(id)s could not be found.'
