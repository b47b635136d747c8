"""Named points: a process waits at one until the test says go."""

import threading
import time

from rbdmig import faults


def _wait_for(path, timeout=10):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert time.monotonic() < deadline, '%s never appeared' % path
        time.sleep(0.02)


def test_a_paused_point_waits_for_go_at_each_reach(monkeypatch, tmp_path):
    monkeypatch.setenv(faults.PAUSE_AT, 'step.a')
    monkeypatch.setenv(faults.PAUSE_DIR, str(tmp_path))
    points = faults.Points()
    passed = []

    def run():
        for _ in range(2):
            points.reach('step.b')  # another point: no wait
            points.reach('step.a')
            passed.append(len(passed) + 1)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    _wait_for(tmp_path / 'step.a.1.reached')
    thread.join(timeout=0.3)
    assert passed == [] and thread.is_alive()  # it waits
    (tmp_path / 'step.a.1.go').touch()
    _wait_for(tmp_path / 'step.a.2.reached')
    assert passed == [1]
    (tmp_path / 'release').touch()  # and no more waits after this
    thread.join(timeout=10)
    assert passed == [1, 2] and not thread.is_alive()
    assert not (tmp_path / 'step.b.1.reached').exists()


def test_a_pause_point_waits_only_where_pause_at_names_it(monkeypatch,
                                                         tmp_path):
    monkeypatch.setenv(faults.PAUSE_AT, 'rate.a')
    monkeypatch.setenv(faults.PAUSE_DIR, str(tmp_path))
    monkeypatch.setattr(faults, 'POINTS', faults.Points())
    passed = []

    def run():
        for _ in range(3):
            faults.pause_point('rate.b')  # another point: no wait
            faults.pause_point('rate.a')
            passed.append(len(passed) + 1)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    # Held at the second reach: the first released, the third not yet.
    _wait_for(tmp_path / 'rate.a.1.reached')
    (tmp_path / 'rate.a.1.go').touch()
    _wait_for(tmp_path / 'rate.a.2.reached')
    thread.join(timeout=0.3)
    assert passed == [1] and thread.is_alive()
    (tmp_path / 'release').touch()
    thread.join(timeout=10)
    assert passed == [1, 2, 3] and not thread.is_alive()
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        'rate.a.1.go', 'rate.a.1.reached', 'rate.a.2.reached',
        'rate.a.3.reached', 'release']


def test_a_pause_point_is_never_recorded_killed_at_or_hooked(monkeypatch,
                                                            tmp_path):
    # Reached once a progress write: were it a crash point, every path
    # the crash tests record would depend on the copy's speed.
    record = tmp_path / 'reached'
    monkeypatch.setenv(faults.RECORD, str(record))
    monkeypatch.setenv(faults.CRASH_AT, 'rate.a')
    kills = []
    monkeypatch.setattr(faults.os, 'kill',
                        lambda pid, sig: kills.append((pid, sig)))
    points = faults.Points()
    hooked = []
    points.hook = hooked.append
    monkeypatch.setattr(faults, 'POINTS', points)

    for _ in range(3):
        faults.pause_point('rate.a')
    faults.point('step.a')

    assert record.read_text().split() == ['step.a']
    assert hooked == ['step.a']
    assert kills == []
    assert 'rate.a' not in points.counts
