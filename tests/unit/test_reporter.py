"""The progress reporter and the notification payloads (fake clock)."""

import pytest

from rbdmig.migration import notify
from rbdmig.migration import reporter

EVENT = dict(volume_id='v1', source_backend='ceph-a',
             destination_backend='ceph-b', method='extents')


class Clock(object):
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def _reporter(clock, interval=0):
    sent, recorded = [], []
    notifier = notify.Notifier(
        lambda event_type, body, error: sent.append((event_type, body,
                                                     error)))
    rep = reporter.Reporter(
        'migration of v1', interval, notifier=notifier, event=EVENT,
        record=lambda *args: recorded.append(args), clock=clock)
    return rep, sent, recorded


def test_every_report_has_rate_and_eta_from_the_interval():
    clock = Clock()
    rep, sent, recorded = _reporter(clock)
    rep.start()
    rep.set_size(1000)
    clock.now += 2
    rep.absolute_update(200)
    rep.report()  # 100 B/s over the last 2 s: 800 B left, 8 s
    clock.now += 1
    rep.absolute_update(500)
    rep.report()  # 300 B/s: 500 B left
    clock.now += 1
    rep.absolute_update(1000)
    rep.stop()

    assert recorded[1] == (200, 1000, 100, 8.0)
    assert recorded[2][:3] == (500, 1000, 300)
    assert recorded[2][3] == pytest.approx(500 / 300)
    assert recorded[-1] == (1000, 1000, 250, None)  # the mean, done
    assert [e for e, _, _ in sent] == [notify.START, notify.PROGRESS,
                                       notify.PROGRESS, notify.PROGRESS,
                                       notify.END]
    assert sent[-1][1]['rate'] == 250  # the end event has the mean too


def test_payloads_carry_every_field():
    clock = Clock()
    rep, sent, _ = _reporter(clock)
    rep.start()
    rep.set_size(4000)
    clock.now += 4
    rep.absolute_update(1000)
    rep.report()

    event, body, error = sent[-1]
    assert (event, error) == (notify.PROGRESS, False)
    assert body == dict(EVENT, bytes_done=1000, bytes_total=4000,
                        percent=25.0, rate=250, duration=4.0, error=None)


def test_an_error_ends_with_an_error_event():
    clock = Clock()
    rep, sent, _ = _reporter(clock)
    rep.set_size(10)
    with pytest.raises(RuntimeError):
        with rep:
            raise RuntimeError('the copy failed')
    event, body, error = sent[-1]
    assert (event, error) == (notify.ERROR, True)
    assert body['error'] == 'the copy failed'


def test_a_failing_transport_or_database_never_fails_the_move():
    def broken(*args):
        raise ConnectionError('telemetry is down')

    rep = reporter.Reporter('m', 0, record=broken,
                            notifier=notify.Notifier(broken), event=EVENT)
    rep.set_size(10)
    with rep:
        rep.absolute_update(10)  # no exception escapes


def test_the_thread_reports_at_the_interval_even_when_stalled():
    import time
    rep, sent, recorded = _reporter(time.monotonic, interval=0.02)
    rep.set_size(100)
    rep.start()
    deadline = time.monotonic() + 10
    while len(recorded) < 4:  # nothing moves meanwhile
        assert time.monotonic() < deadline, recorded
        time.sleep(0.01)
    rep.stop()
    assert len(recorded) >= 5  # start, several ticks, the final one
    assert sent[-1][0] == notify.END


def test_a_move_refused_before_copying_sends_nothing():
    rep, sent, recorded = _reporter(Clock())
    with rep:
        pass  # the driver answered (False, None) without copying
    assert sent == [] and recorded == []
