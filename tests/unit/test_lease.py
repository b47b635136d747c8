"""Whether a migration's process still runs: pid here, lease anywhere."""

import datetime
import os
import socket
import threading
import time
import types

from oslo_utils import timeutils

from rbdmig.migration import lease

NOW = datetime.datetime(2026, 12, 2, 18, 0, 0)


def _record(host, seconds_ago):
    return types.SimpleNamespace(
        host=host, updated_at=NOW - datetime.timedelta(seconds=seconds_ago))


HERE = socket.gethostname()


def test_a_live_process_here_with_a_fresh_lease_is_alive():
    assert lease.alive(_record('%s:%d' % (HERE, os.getpid()), 1), NOW)


def test_a_vanished_pid_here_is_dead_at_once():
    assert not lease.alive(_record('%s:999999999' % HERE, 1), NOW)


def test_a_pid_past_its_lease_is_another_process():
    assert not lease.alive(_record('%s:%d' % (HERE, os.getpid()),
                                   lease.LEASE + 1), NOW)


def test_another_hosts_record_lives_by_its_lease_alone():
    # Issue 13, defect 11: another host's record was alive forever.
    assert lease.alive(_record('elsewhere:1', lease.LEASE - 1), NOW)
    assert not lease.alive(_record('elsewhere:1', lease.LEASE + 1), NOW)


def test_a_lease_of_the_operators_choice():
    assert not lease.alive(_record('elsewhere:1', 31), NOW, lease=30)
    assert lease.alive(_record('elsewhere:1', 29), NOW, lease=30)
    assert lease.heartbeat_interval(30) == 3
    assert lease.heartbeat_interval(lease.LEASE) == lease.HEARTBEAT


def test_the_heartbeat_refreshes_until_it_exits():
    beats = []
    enough = threading.Event()

    def touch():
        beats.append(timeutils.utcnow())
        if len(beats) == 3:
            enough.set()
        return True

    with lease.Heartbeat(touch, interval=0.01):
        assert enough.wait(5)
    count = len(beats)
    assert count >= 3
    threading.Event().wait(0.05)
    assert len(beats) == count  # stopped


def test_the_heartbeat_stops_when_the_migration_ended():
    beats = []
    with lease.Heartbeat(lambda: beats.append(1) or False, interval=0.01):
        deadline = time.monotonic() + 10
        while not beats:
            assert time.monotonic() < deadline
            threading.Event().wait(0.01)
        threading.Event().wait(0.1)  # ten more intervals: no beat
    assert beats == [1]
