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
