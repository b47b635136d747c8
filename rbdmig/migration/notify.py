"""Migration events over oslo.messaging, as Cinder reports to telemetry."""

from oslo_log import log as logging

LOG = logging.getLogger(__name__)

START = 'volume.migration.start'
PROGRESS = 'volume.migration.progress'
END = 'volume.migration.end'
ERROR = 'volume.migration.error'


def payload(volume_id, source_backend, destination_backend, method,
            bytes_done=0, bytes_total=0, rate=None, duration=None,
            error=None):
    """The payload every event carries.

    :param rate: bytes per second since the last report (the mean of the
        whole move in the end and error events), or None.
    :param duration: seconds since the migration started, or None.
    :param error: one sentence (no secret: rbdmig's messages carry none),
        or None.
    """
    percent = round(100.0 * bytes_done / bytes_total, 1) if bytes_total \
        else 0.0
    return {'volume_id': volume_id, 'source_backend': source_backend,
            'destination_backend': destination_backend, 'method': method,
            'bytes_done': bytes_done, 'bytes_total': bytes_total,
            'percent': percent, 'rate': rate, 'duration': duration,
            'error': error}


class Notifier(object):
    """Sends migration events; never lets a notification fail a move.

    :param send: ``send(event_type, payload, error)``: oslo.messaging's
        ``Notifier.info``/``.error`` bound to a context (see
        :func:`from_conf`), or Cinder's notifier under Cinder.
    """

    def __init__(self, send):
        self._send = send

    def emit(self, event_type, body):
        try:
            self._send(event_type, body, event_type == ERROR)
        except Exception:  # a telemetry outage must not stop a migration
            LOG.exception('Could not send notification %s', event_type)


NULL = Notifier(lambda event_type, body, error: None)


def from_conf(conf, host):
    """A :class:`Notifier` from ``[oslo_messaging_notifications]``.

    oslo.messaging's options are registered on ``conf``; publisher id
    ``rbdmig.<host>``.

    Events ``volume.migration.start``, ``.progress``, ``.end`` and
    ``.error``, published as ``rbdmig.<host>``, with one payload shape
    (:func:`payload`).  Where they go is ``[oslo_messaging_notifications]``
    (``driver``, ``transport_url``, ``topics``): with no driver set, as by
    default, nothing is sent.
    """
    import oslo_messaging as messaging
    transport = messaging.get_notification_transport(conf)
    notifier = messaging.Notifier(transport, publisher_id='rbdmig.%s' % host)

    def send(event_type, body, error):
        (notifier.error if error else notifier.info)({}, event_type, body)

    return Notifier(send)
