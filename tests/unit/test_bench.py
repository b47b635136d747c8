"""The bench's arithmetic: sizes, rbd bench parsing, ratios, targets."""

import argparse
import os

import pytest
from oslo_utils import units

from rbdmig.bench import cases
from rbdmig.bench import command
from rbdmig.bench import report
from rbdmig.bench import runner
from rbdmig.bench import targets
from rbdmig.bench import volumes
from rbdmig.ceph import methods as rbd_methods


def test_sizes_are_gib_unless_said_mib():
    assert command.parse_size('4') == 4 * units.Gi
    assert command.parse_size('12G') == 12 * units.Gi
    assert command.parse_size('64M') == 64 * units.Mi
    assert command.parse_size('64MiB') == 64 * units.Mi
    for bad in ('0', '-1', '1.5', 'x', '4T'):
        with pytest.raises(argparse.ArgumentTypeError):
            command.parse_size(bad)


def test_rbd_bench_rate_is_read_from_the_summary_line():
    out = ('bench  type write io_size 4194304 io_threads 16 bytes 67108864\n'
           '  SEC       OPS   OPS/SEC   BYTES/SEC\n'
           '    1        10    10.0    40 MiB/s\n'
           'elapsed: 0   ops: 16   ops/sec: 235.3   bytes/sec: 941 MiB/s\n')
    assert runner.parse_rbd_bench(out) == 941 * units.Mi
    assert runner.parse_rbd_bench('bytes/sec: 1.5 GiB/s') == 1.5 * units.Gi
    with pytest.raises(ValueError):
        runner.parse_rbd_bench('rbd: error opening image')


def test_every_assisted_method_is_a_case():
    labels = [step['label'] for step in runner.plan()]
    for method in rbd_methods.METHODS:
        assert 'rbdmig ' + method in labels
    assert 'rbdmig %s +progress' % runner.default_method() in labels


def test_extents_are_seeded_and_sized():
    size = 100 * units.Mi
    assert volumes.chosen_extents(size, 1.0, 1) == list(range(100))
    tenth = volumes.chosen_extents(size, 0.1, 7)
    assert len(tenth) == 10 and tenth == volumes.chosen_extents(size, 0.1, 7)
    assert len(volumes.chosen_extents(size, 0.001, 7)) == 1


def test_cpu_of_processes_is_read_from_proc():
    mine = cases.osd_cpu([os.getpid()])
    assert mine > 0
    assert cases.osd_cpu([os.getpid(), 2 ** 22 + 1]) >= mine  # gone: 0
    assert cases.peak_rss() > 10 * units.Mi
    assert cases.peak_rss(2 ** 22 + 1) == 0


def test_ceph_tools_are_whole_moves():
    steps = {s['label']: s for s in runner.plan()}
    for tool in cases.CLI_KINDS:
        assert steps[tool]['route'] == runner.MOVE


def _run(case, seconds, fill='full', size=units.Gi, **extra):
    row = {'size': size, 'fill': fill, 'case': case, 'rep': 0, 'ok': True,
           'checksum_ok': True, 'seconds': seconds, 'cpu_user': seconds,
           'cpu_sys': 0.0, 'peak_rss': 100 * units.Mi, 'src': 'ceph-a',
           'dst': 'ceph-b', 'route': 'copy', 'src_allocated': size,
           'dst_allocated': size, 'dst_reference': size}
    row.update(extra)
    return row


def _data(runs):
    return {'config': {'sizes': [units.Gi], 'fills': ['full', '10%', '1%'],
                       'default_method': 'deep_copy',
                       'cases': sorted({r['case'] for r in runs})},
            'ceiling': [{'size': units.Gi, 'backend': b, 'ok': True,
                         'read': 400 * units.Mi, 'write': 400 * units.Mi}
                        for b in ('ceph-a', 'ceph-b')],
            'volumes': [], 'runs': runs}


def test_ratios_come_from_the_same_run():
    data = _data([_run('rbd cp', 8.0), _run('rbd deep cp', 4.0),
                  _run(report.CINDER, 10.0), _run('rbdmig deep_copy', 5.0)])
    rows = {r['case']: r for r in report.summarize(data)}
    mine = rows['rbdmig deep_copy']
    assert mine['x_ceph'] == pytest.approx(4.0 / 5.0)
    assert mine['x_cinder'] == pytest.approx(2.0)
    # Bound: 1 / (1/400 + 1/400) = 200 MiB/s; 1 GiB in 5 s is 204.8.
    assert mine['x_bound'] == pytest.approx(204.8 / 200)


def test_targets_pass_and_fail_on_the_numbers():
    data = _data([
        _run('rbd deep cp', 4.0), _run(report.CINDER, 10.0),
        _run('rbdmig deep_copy', 5.0),
        _run('rbdmig deep_copy', 0.1, fill='1%'),
        _run('rbdmig deep_copy +progress', 5.05),
        _run(report.TO_FILE, 5.0), _run(report.TO_FILE, 1.0, fill='10%'),
        _run(report.CINDER, 10.0, fill='10%'),
    ])
    found = {t['target']: t['result']
             for t in targets.compute(data, report.summarize(data))}
    mib = ', 1024 MiB'
    assert found['rbdmig deep_copy full vs fastest Ceph tool' + mib] == 'FAIL'
    assert found['rbdmig deep_copy full vs copy bound' + mib] == 'PASS'
    assert found['rbdmig deep_copy 1% allocated time / full' + mib] == 'PASS'
    assert found['rbdmig generic RBD->file full vs Cinder' + mib] == 'PASS'
    assert found['rbdmig generic RBD->file 10% vs Cinder' + mib] == 'PASS'
    assert found['rbdmig generic file->RBD full vs Cinder' + mib] == 'FAIL'
    assert found['rbdmig deep_copy full progress on/off' + mib] == 'PASS'
    assert found['same pool < 0.2 s' + mib] == 'FAIL'  # never ran
    assert found['peak RSS growth, rbdmig cases, full volumes'] == 'N/A'
