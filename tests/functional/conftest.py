"""Fixtures for functional tests: real, throwaway Ceph clusters.

Two independent clusters (``ceph_cluster`` and ``ceph_cluster2``) are
started at most once per session, each in its own temporary directory, and
stopped at the end of the session.  Ceph must be installed (see
``tools/setup.sh``): without it these tests fail, they are never skipped.
``postgresql`` is a throwaway PostgreSQL server for the tests of several
hosts on one database (``tests/pg_server.py``, as the unit tests').

Environment variables:

``RBDMIG_SANDBOX_OBJECTSTORE``
    ``memstore`` (the default: data in RAM) or ``bluestore`` (a sparse
    file per OSD) for the session clusters.
``RBDMIG_SANDBOX_OSD_BYTES``
    The capacity of each OSD of the session clusters, in bytes or with a
    binary unit (``1536M``, ``1536MiB``, ``2G``); 3 GiB by default (a
    memstore OSD only holds what is written; 1.5 GiB left a test short of
    room after others, in a random order, had written theirs).
``RBDMIG_SANDBOX_KEEP``
    If ``1``, keep the clusters' directories (logs, data) after the
    session; their daemons are stopped regardless.
"""

import os

import pytest
from oslo_utils import strutils
from oslo_utils import units

from rbdmig import sandbox
from tests import pg_server


def sandbox_settings():
    """The Cluster arguments for session clusters, from the environment."""
    size = os.environ.get('RBDMIG_SANDBOX_OSD_BYTES', '3GiB')
    if not size.isdigit():
        if size[-1].isalpha() and size[-1] not in 'bB':
            size += 'iB'  # 2G -> 2GiB
        size = strutils.string_to_bytes(size, return_int=True)
    return {
        'objectstore': os.environ.get('RBDMIG_SANDBOX_OBJECTSTORE',
                                      'memstore'),
        'osd_bytes': int(size),
    }


class ClusterRegistry:
    """Clusters started during the session, stopped in reverse order."""

    def __init__(self):
        self.clusters = []

    def start(self, base_dir, **kwargs):
        """Start a cluster, registered for stopping even if start fails."""
        cluster = sandbox.Cluster(base_dir, **kwargs)
        self.clusters.append(cluster)
        return cluster.start()

    def stop_all(self):
        """Stop every cluster; raise once, naming every failure."""
        keep = os.environ.get('RBDMIG_SANDBOX_KEEP') == '1'
        errors = []
        while self.clusters:
            cluster = self.clusters.pop()
            try:
                cluster.stop(remove=not keep)
            except Exception as e:  # noqa: BLE001 - collect, then raise
                errors.append(f'{cluster!r}: {e}')
        if errors:
            raise RuntimeError('Stopping Ceph sandboxes failed: '
                               + '; '.join(errors))


@pytest.fixture(scope='session')
def cluster_registry():
    registry = ClusterRegistry()
    yield registry
    registry.stop_all()


@pytest.fixture(scope='session')
def ceph_cluster(cluster_registry, tmp_path_factory):
    """A running sandbox cluster: backends ceph-a, ceph-b and files."""
    return cluster_registry.start(tmp_path_factory.mktemp('ceph'),
                                  name='ceph', backend_prefix='ceph',
                                  **sandbox_settings())


@pytest.fixture(scope='session')
def ceph_cluster2(cluster_registry, tmp_path_factory):
    """A second, independent cluster: backends other-a, other-b, files."""
    return cluster_registry.start(tmp_path_factory.mktemp('other'),
                                  name='other', backend_prefix='other',
                                  **sandbox_settings())


@pytest.fixture(scope='session')
def bluestore_cluster(cluster_registry, tmp_path_factory):
    """A one-OSD bluestore cluster (backends blue-a, blue-b): where what
    the OSD stores, holes included, is what a deployment's would."""
    return cluster_registry.start(tmp_path_factory.mktemp('blue'),
                                  name='blue', backend_prefix='blue',
                                  objectstore='bluestore',
                                  osd_bytes=3 * units.Gi)


@pytest.fixture(scope='session')
def postgresql():
    """A throwaway PostgreSQL server (:mod:`tests.pg_server`), stopped at
    the end of the session; without PostgreSQL installed it fails."""
    server = pg_server.Server()
    try:
        yield server.start()
    finally:
        server.stop()


class Cleanup(object):
    """Undo steps run in reverse order; every failure is reported."""

    def __init__(self):
        self.steps = []

    def add(self, what, func, *args):
        self.steps.append((what, func, args))

    def run(self):
        errors = []
        while self.steps:
            what, func, args = self.steps.pop()
            try:
                func(*args)
            except Exception as err:  # noqa: BLE001 - collect, then raise
                errors.append('%s: %r' % (what, err))
        if errors:
            raise RuntimeError('Cleanup failed: ' + '; '.join(errors))


@pytest.fixture
def report_each_change():
    """rbdmig.ext's copies report progress at each change of their count
    instead of every 0.1 s: a test's callback cancels at a known point
    (after the first object), however fast the machine copies."""
    from rbdmig.ext import _offload
    previous = _offload.set_report_interval(0)
    yield
    _offload.set_report_interval(previous)


@pytest.fixture
def cleanup():
    steps = Cleanup()
    yield steps
    steps.run()


_FAULTS = []


@pytest.fixture
def fault_table():
    """``record(fault, expected, observed, intact)``: a row of the fault
    table printed after the run (and written, as reStructuredText, to
    ``$RBDMIG_RELIABILITY_TABLE`` when set: doc/reliability.rst's)."""
    def record(fault, expected, observed, intact):
        _FAULTS.append((fault, expected, observed,
                        'yes' if intact else 'NO'))
    return record


_CRASHES = {}  # table -> {path: {point: cell}}


@pytest.fixture
def crash_table():
    """``record(path, point, cell, table='engine')``: a cell of a
    crash-point table (paths x points) printed after the run, and
    written as reStructuredText to ``$RBDMIG_CRASH_TABLE`` when set
    (one list-table per ``table``, under its name as a rubric)."""
    def record(path, point, cell, table='engine'):
        _CRASHES.setdefault(table, {}).setdefault(path, {})[point] = cell
    return record


def _write_crash_table(path):
    with open(path, 'w') as out:
        for title, crashes in _CRASHES.items():
            points = []
            for cells in crashes.values():
                points += [p for p in cells if p not in points]
            out.write('.. rubric:: %s\n\n' % title)
            out.write('.. list-table::\n   :header-rows: 1\n   '
                      ':stub-columns: 1\n\n')
            out.write('   * - crash point\n')
            out.writelines('     - %s\n' % p for p in crashes)
            for point in points:
                out.write('   * - ``%s``\n' % point)
                out.writelines('     - %s\n' % crashes[p].get(point, '')
                               for p in crashes)
            out.write('\n')


def pytest_terminal_summary(terminalreporter):
    if _CRASHES:
        terminalreporter.section('crash points')
        for crashes in _CRASHES.values():
            for path, cells in crashes.items():
                terminalreporter.write_line('%s: %s' % (path, ', '.join(
                    '%s %s' % item for item in cells.items())))
        if os.environ.get('RBDMIG_CRASH_TABLE'):
            _write_crash_table(os.environ['RBDMIG_CRASH_TABLE'])
    if not _FAULTS:
        return
    terminalreporter.section('faults injected')
    for row in _FAULTS:
        terminalreporter.write_line(' | '.join(row))
    path = os.environ.get('RBDMIG_RELIABILITY_TABLE')
    if path:
        with open(path, 'w') as table:
            table.write('.. list-table::\n   :header-rows: 1\n   '
                        ':widths: 25 25 40 10\n\n')
            rows = [('Fault', 'Expected', 'Observed', 'Data intact')]
            for row in rows + _FAULTS:
                table.write('   * - %s\n' % row[0])
                table.writelines('     - %s\n' % cell for cell in row[1:])
