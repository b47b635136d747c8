"""The bench's arithmetic: sizes, data, plans, medians, ratios, targets."""

import argparse
import hashlib
import json
import os

import pytest
from oslo_utils import units

from rbdmig.bench import cases
from rbdmig.bench import chart
from rbdmig.bench import command
from rbdmig.bench import output
from rbdmig.bench import placement
from rbdmig.bench import plan
from rbdmig.bench import report
from rbdmig.bench import runner
from rbdmig.bench import targets
from rbdmig.bench import volumes
from rbdmig.ceph import methods as rbd_methods

ONE, THREE = '1 OSD', '3 OSDs'


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


def test_every_method_is_a_case_on_every_cluster():
    one = [step['label'] for step in plan.plan(1)]
    three = [step['label'] for step in plan.plan(3)]
    for method in rbd_methods.METHODS:
        assert 'rbdmig ' + method in one and 'rbdmig ' + method in three
    for tool in cases.CLI_KINDS:
        assert tool in one and tool in three
    assert 'rbdmig %s +progress' % plan.default_method() in one
    # More OSDs: the moves only.
    assert report.CINDER in one and report.CINDER not in three
    assert report.SAME_POOL not in three and len(set(one)) == len(one)


def test_ceph_tools_are_whole_moves_and_verify_levels_are_cases():
    steps = {s['label']: s for s in plan.plan(1)}
    for tool in cases.CLI_KINDS:
        assert steps[tool]['route'] == plan.MOVE
    default = plan.option_default('migration_verify')
    for method in plan.verify_methods():
        assert steps['rbdmig ' + method]['verify'] == default
        for level in set(plan.VERIFY_LEVELS) - {default}:
            step = steps['rbdmig %s verify=%s' % (method, level)]
            assert (step['method'], step['verify']) == (method, level)
    assert 'offload' in plan.verify_methods()


def test_extents_are_seeded_and_sized():
    size = 100 * units.Mi
    assert volumes.chosen_extents(size, 1.0, 1) == list(range(100))
    tenth = volumes.chosen_extents(size, 0.1, 7)
    assert len(tenth) == 10 and tenth == volumes.chosen_extents(size, 0.1, 7)
    assert len(volumes.chosen_extents(size, 0.001, 7)) == 1


def test_fill_writes_what_the_expected_digest_hashes():
    size, seed = 24 * units.Mi, 5
    slots = volumes.chosen_extents(size, 0.5, seed)
    image = bytearray(size)
    writes = list(volumes._runs(volumes.extent_data(seed), slots))
    for data, offset in writes:
        # Adjacent extents are joined, never across a 4 MiB object.
        assert offset // volumes.CHUNK == (
            offset + len(data) - 1) // volumes.CHUNK
        image[offset:offset + len(data)] = data
    assert sum(len(d) for d, _ in writes) == len(slots) * volumes.EXTENT
    assert len(writes) < len(slots)
    expected = volumes.expected_digest(size, 0.5, seed)
    # The sha256 of the 4 MiB chunks' sha256s, zero chunks included.
    assert _tree(image) == expected
    # Every extent differs, so one written in the wrong place shows.
    data = volumes.extent_data(seed)
    assert len({data(s) for s in range(2 * volumes.POOL)}) == 2 * \
        volumes.POOL
    assert volumes.expected_digest(size, 0.5, seed + 1) != expected


def _tree(image):
    return hashlib.sha256(b''.join(
        hashlib.sha256(image[o:o + volumes.CHUNK]).digest()
        for o in range(0, len(image), volumes.CHUNK))).hexdigest()


def test_the_digest_tells_every_byte_zero_chunks_too():
    size = 6 * units.Mi  # the last chunk is half a chunk
    image = bytearray(size)
    digest = volumes.Digest()
    for offset in range(0, size, volumes.CHUNK):
        digest.update(bytes(image[offset:offset + volumes.CHUNK]))
    assert digest.hexdigest() == _tree(image)
    image[size - 1] = 1
    other = volumes.Digest()
    for offset in range(0, size, volumes.CHUNK):
        other.update(bytes(image[offset:offset + volumes.CHUNK]))
    assert other.hexdigest() == _tree(image) != digest.hexdigest()


def test_a_volume_is_hashed_by_the_chunks_that_hold_data():
    size = 10 * units.Mi  # two chunks and a half
    image = bytearray(size)
    image[5 * units.Mi] = 7
    read = []

    def reader(offsets):
        read.extend(offsets)
        return (bytes(image[o:o + volumes.CHUNK]) for o in offsets)

    assert volumes._sparse_digest(size, {1}, reader) == _tree(image)
    # The chunk of zeros is never read; the last, partial one is.
    assert read == [volumes.CHUNK, 2 * volumes.CHUNK]


def test_data_in_whole_objects_is_scattered_and_hashed_without_zeros():
    size = 256 * units.Mi
    slots = volumes.chosen_extents(size, 1 / 16, 3, volumes.CHUNK)
    per = volumes.CHUNK // volumes.EXTENT
    objects = sorted({s // per for s in slots})
    assert len(slots) == 4 * per and len(objects) == 4
    assert slots == [o * per + n for o in objects for n in range(per)]
    image = bytearray(size)
    for chunk, offset in volumes._runs(volumes.extent_data(3), slots):
        image[offset:offset + len(chunk)] = chunk
    assert volumes.expected_digest(size, 1 / 16, 3, volumes.CHUNK) == \
        _tree(image)
    # Pieces of 1 MiB keep the earlier volumes' data where it was.
    assert volumes.chosen_extents(100 * units.Mi, 0.1, 7) == \
        volumes.chosen_extents(100 * units.Mi, 0.1, 7, volumes.EXTENT)


def test_a_file_volume_lists_its_data_runs(tmp_path):
    path = tmp_path / 'vol'
    with open(path, 'wb') as f:
        f.truncate(8 * units.Mi)
        os.pwrite(f.fileno(), b'x' * units.Mi, 2 * units.Mi)
    with open(path, 'rb', buffering=0) as f:
        runs = volumes._FileIO(f).data_runs()
    assert runs == [[2 * units.Mi, units.Mi]]


def test_cpu_of_processes_is_read_from_proc():
    mine = cases.osd_cpu([os.getpid()])
    assert mine > 0
    assert cases.osd_cpu([os.getpid(), 2 ** 22 + 1]) >= mine  # gone: 0
    assert cases.peak_rss() > 10 * units.Mi
    assert cases.peak_rss(2 ** 22 + 1) == 0


def _run(case, seconds, fill='full', size=units.Gi, cluster=ONE, **extra):
    row = {'cluster': cluster, 'size': size, 'fill': fill, 'case': case,
           'rep': 0, 'ok': True, 'checksum_ok': True, 'seconds': seconds,
           'cpu_user': seconds, 'cpu_sys': 0.0, 'osd_cpu': seconds,
           'peak_rss': 100 * units.Mi, 'src': 'ceph-a', 'dst': 'ceph-b',
           'route': 'move', 'src_allocated': size, 'dst_allocated': size,
           'dst_reference': size}
    row.update(extra)
    return row


def _data(runs, clusters=((ONE, 1, [units.Gi]),), default='deep_copy'):
    return {'config': {'sizes': sorted({s for _, _, ss in clusters
                                        for s in ss}),
                       'fills': ['full', '10%'], 'repeat': 1,
                       'default_method': default, 'queue_depth': 16,
                       'chunk_size': 4 * units.Mi, 'objectstore': 'memstore',
                       'clusters': [{'name': n, 'osds': o, 'sizes': ss,
                                     'pool_size': 1,
                                     'pgs_per_osd': {'0': 8},
                                     'cases': sorted({r['case']
                                                      for r in runs})}
                                    for n, o, ss in clusters]},
            'machine': {'cpu': 'test', 'cores': 2, 'ram_bytes': units.Gi,
                        'kernel': 'k', 'load_at_start': [0.5],
                        'load_at_end': [0.5], 'ceph': 'ceph 16'},
            'ceiling': [{'cluster': n, 'size': s, 'backend': b, 'ok': True,
                         'read': 400 * units.Mi, 'write': 400 * units.Mi}
                        for n, _, ss in clusters for s in ss
                        for b in ('ceph-a', 'ceph-b')],
            'volumes': [{'cluster': n, 'size': s, 'fill': f,
                         'allocated': s, 'rbd_extents': 1, 'sha256': 'ab'}
                        for n, _, ss in clusters for s in ss
                        for f in ('full', '10%')],
            'runs': runs}


def test_medians_and_ratios_come_from_the_same_cluster_and_run():
    data = _data([_run('rbd cp', 8.0), _run('rbd deep cp', 4.0),
                  _run('rbd deep cp', 6.0), _run('rbd deep cp', 100.0),
                  _run(report.CINDER, 10.0), _run('rbdmig deep_copy', 5.0),
                  _run('rbd deep cp', 1.0, cluster=THREE)],
                 clusters=((ONE, 1, [units.Gi]), (THREE, 3, [units.Gi])))
    rows = {(r['cluster'], r['case']): r for r in report.summarize(data)}
    assert rows[(ONE, 'rbd deep cp')]['seconds'] == 6.0  # the median
    mine = rows[(ONE, 'rbdmig deep_copy')]
    assert mine['x_ceph'] == pytest.approx(6.0 / 5.0)
    assert mine['x_cinder'] == pytest.approx(2.0)
    assert mine['cpu'] == 5.0 and mine['osd_cpu'] == 5.0
    # Bound: 1 / (1/400 + 1/400) = 200 MiB/s; 1 GiB in 5 s is 204.8.
    assert mine['x_bound'] == pytest.approx(204.8 / 200)


def _offload_runs(cluster, size, full, tenth, deep, cpu=0.1, rss=0,
                  thin=True):
    return [
        _run('rbd deep cp', deep, size=size, cluster=cluster),
        _run('rbd deep cp', deep / 5, fill='10%', size=size,
             cluster=cluster),
        _run('rbdmig offload', full, size=size, cluster=cluster,
             cpu_user=deep * cpu, peak_rss=(100 + rss) * units.Mi),
        _run('rbdmig offload', tenth, fill='10%', size=size,
             cluster=cluster, cpu_user=deep * cpu / 5,
             src_allocated=size // 10,
             dst_allocated=size // 10 if thin else size // 5),
    ]


def _found(data):
    return {t['target']: (t['result'], t['measured'])
            for t in targets.compute(data, report.summarize(data))}


def test_offload_targets_pass_and_fail_on_the_numbers():
    gib, four = units.Gi, 4 * units.Gi
    runs = (_offload_runs(ONE, gib, 4.0, 0.5, 5.1)
            + _offload_runs(ONE, four, 16.0, 3.5, 16.0, cpu=0.2, rss=10)
            + _offload_runs(THREE, gib, 4.0, 0.5, 5.9, thin=False)
            + _offload_runs(THREE, 2 * gib, 4.0, 0.5, 6.1, rss=80))
    found = _found(_data(runs, clusters=((ONE, 1, [gib, four]),
                                         (THREE, 3, [gib, 2 * gib]))))
    one = ', 1 OSD, 1024 MiB, full'
    assert found['offload vs fastest Ceph move' + one][0] == 'PASS'
    assert found['offload vs fastest Ceph move, 1 OSD, 4096 MiB, full'][
        0] == 'FAIL'
    # Three OSDs ask for 1.5x: 5.9/4 fails where 5.1/4 passed on one.
    assert found['offload vs fastest Ceph move, 3 OSDs, 1024 MiB, full'][
        0] == 'FAIL'
    assert found['offload vs fastest Ceph move, 3 OSDs, 2048 MiB, full'][
        0] == 'PASS'
    cpu = found['offload host CPU/GiB vs rbd deep cp' + one]
    assert cpu[0] == 'PASS' and 'OSDs' in cpu[1]
    assert found['offload host CPU/GiB vs rbd deep cp, 1 OSD, 4096 MiB, '
                 'full'][0] == 'FAIL'
    sparse = 'rbdmig offload 10% time / full, as thin, '
    assert found[sparse + '1 OSD, 1024 MiB'][0] == 'PASS'
    assert found[sparse + '1 OSD, 4096 MiB'][0] == 'FAIL'  # 3.5/16
    assert found[sparse + '3 OSDs, 1024 MiB'][0] == 'FAIL'  # not thin
    memory = 'peak RSS growth, %s, %s, offload'
    assert found[memory % (ONE, '1024 MiB -> 4096 MiB')][0] == 'PASS'
    assert found[memory % (THREE, '1024 MiB -> 2048 MiB')][0] == 'FAIL'


def test_missing_cases_fail_and_one_size_is_not_applicable():
    found = _found(_data([_run('rbd deep cp', 4.0)]))
    assert found['offload vs fastest Ceph move, 1 OSD, 1024 MiB, full'] == (
        'FAIL', 'case failed or missing')
    assert found['peak RSS growth, 1 OSD, 1024 MiB -> 1024 MiB, rbdmig '
                 'cases'][0] == 'N/A'
    assert found['same pool < 0.2 s, 1 OSD, 1024 MiB'][0] == 'FAIL'


def test_earlier_targets_pass_and_fail_on_the_numbers():
    data = _data([
        _run('rbd deep cp', 4.0), _run(report.CINDER, 10.0),
        _run('rbdmig deep_copy', 5.0),
        _run('rbdmig deep_copy', 0.5, fill='10%'),
        _run('rbdmig deep_copy +progress', 5.05),
        _run(report.TO_FILE, 5.0), _run(report.TO_FILE, 1.0, fill='10%'),
        _run(report.CINDER, 10.0, fill='10%'),
    ])
    found = {k: v[0] for k, v in _found(data).items()}
    tag = ', 1 OSD, 1024 MiB'
    assert found['rbdmig deep_copy full vs fastest Ceph move' + tag] == \
        'FAIL'
    assert found['rbdmig deep_copy full vs copy bound' + tag] == 'PASS'
    assert found['rbdmig deep_copy 10% time / full, as thin' + tag] == \
        'PASS'
    assert found['rbdmig generic RBD->file full vs Cinder' + tag] == 'PASS'
    assert found['rbdmig generic RBD->file 10% vs Cinder' + tag] == 'PASS'
    assert found['rbdmig generic file->RBD full vs Cinder' + tag] == 'FAIL'
    assert found['rbdmig deep_copy full progress on/off' + tag] == 'PASS'


def test_verify_cost_is_reported_over_none():
    runs = [_run('rbdmig offload verify=none', 2.0, method='offload',
                 verify='none'),
            _run('rbdmig offload', 2.5, method='offload', verify='extents'),
            _run('rbdmig offload verify=osd_checksum', 2.2,
                 method='offload', verify='osd_checksum'),
            _run('rbdmig offload verify=checksum', 5.0, method='offload',
                 verify='checksum')]
    text = report.verify_table(_data(runs), report.summarize(_data(runs)))
    assert 'osd_checksum' in text.splitlines()[1]
    line = [x for x in text.splitlines() if 'offload' in x][0]
    assert '2.000 (+0 %)' in line and '2.500 (+25 %)' in line
    assert '2.200 (+10 %)' in line and '5.000 (+150 %)' in line


def test_the_verify_cost_is_a_column_of_every_volume():
    runs = [_run('rbdmig extents verify=none', 2.0, method='extents',
                 verify='none'),
            _run('rbdmig extents', 2.5, method='extents', verify='extents'),
            _run('rbdmig extents verify=checksum', 5.0, method='extents',
                 verify='checksum'),
            _run('rbdmig extents +progress', 2.6, method='extents',
                 verify='extents', progress=True),
            _run('rbd deep cp', 2.0)]
    rows = {r['case']: r for r in report.summarize(_data(runs))}
    assert rows['rbdmig extents']['verify_cost'] == pytest.approx(0.5)
    assert rows['rbdmig extents verify=checksum']['verify_cost'] == 3.0
    assert rows['rbdmig extents verify=none']['verify_cost'] == 0
    assert 'verify_cost' not in rows['rbd deep cp']
    assert 'verify_cost' not in rows['rbdmig extents +progress']
    assert report.cells(rows['rbdmig extents'])['verify'] == '+0.500'


def test_the_page_and_chart_cover_every_cluster(tmp_path):
    gib = units.Gi
    runs = (_offload_runs(ONE, gib, 4.0, 0.5, 5.1)
            + _offload_runs(THREE, gib, 3.0, 0.4, 5.9)
            + [_run('rbdmig offload', 1.0, cluster=THREE, ok=False,
                    error='boom')])
    data = _data(runs, clusters=((ONE, 1, [gib]), (THREE, 3, [gib])))
    data.update(started='s', finished='f')
    paths = output.write(data, str(tmp_path))
    page = open(paths['rst']).read()
    assert '3 OSDs: 1024 MiB volume, full' in page
    assert 'rbdmig offload (1/2 failed)' in page and '* rbdmig offload: ' \
        'boom' in page
    assert 'Sandbox **3 OSDs**: pools of size 1' in page
    saved = json.load(open(paths['json']))
    assert {t['result'] for t in saved['targets']} <= {'PASS', 'FAIL', 'N/A'}
    assert chart.draw(data, str(tmp_path / 'c.png'))
    assert (tmp_path / 'c.png').read_bytes()[:4] == b'\x89PNG'


class _FakeCeph:
    """Answers the mon commands placement.spread makes."""

    def __init__(self, osds, pgs_per_pool, stuck=False):
        self.osd_count = osds
        self.pools = ['volumes-a', 'volumes-b']
        self.up = {'%d.%x' % (p + 1, i): 0 for p in range(2)
                   for i in range(pgs_per_pool)}
        self.stuck = stuck
        self.calls = []

    def ceph(self, *args):
        self.calls.append(args)
        if args[:2] == ('osd', 'pg-upmap'):
            if not self.stuck:
                self.up[args[2]] = int(args[3])
        elif args[:2] == ('pg', 'ls-by-pool'):
            number = self.pools.index(args[2]) + 1
            return json.dumps({'pg_stats': [
                {'pgid': pg, 'up': [osd], 'state': 'active+clean'}
                for pg, osd in self.up.items()
                if pg.startswith('%d.' % number)]})
        elif args[:2] == ('osd', 'df'):
            counts = {}
            for osd in self.up.values():
                counts[osd] = counts.get(osd, 0) + 1
            return json.dumps({'nodes': [{'id': o, 'pgs': n}
                                         for o, n in counts.items()]})
        elif args[:1] == ('status',):
            return json.dumps({'pgmap': {
                'num_pgs': len(self.up), 'pgs_by_state': [
                    {'state_name': 'active+clean', 'count': len(self.up)}]}})
        return ''


def test_pgs_are_spread_evenly_over_the_osds():
    fake = _FakeCeph(3, 8)
    placement.spread(fake)
    assert placement.pgs_per_osd(fake) == {'0': 5, '1': 6, '2': 5}
    one = _FakeCeph(1, 8)
    placement.spread(one)
    assert one.calls == []


def test_pgs_that_do_not_move_are_reported():
    with pytest.raises(RuntimeError, match='active.clean on .0., want 1'):
        placement.spread(_FakeCeph(3, 8, stuck=True), timeout=0)


def test_a_failed_sandbox_is_recorded_and_the_next_one_runs(monkeypatch,
                                                            tmp_path):
    ran = []

    def run_cluster(osds, sizes, objectstore, repeat, workdir, say, data,
                    checkpoint=None):
        data['config']['clusters'].append({'name': plan.cluster_name(osds),
                                           'osds': osds, 'sizes': sizes})
        ran.append((osds, sizes))
        if osds == 1:
            raise RuntimeError('PGs stuck')
        data['runs'].append(_run('rbd cp', 1.0, cluster=THREE))
        checkpoint(data)

    saved = []
    monkeypatch.setattr(runner, 'run_cluster', run_cluster)
    data = runner.run([units.Gi, 4 * units.Gi], 'memstore', 1,
                      workdir=str(tmp_path / 'w'), say=lambda line: None,
                      osd_counts=(1, 3), multi_osd_sizes=[units.Gi],
                      checkpoint=saved.append)
    assert ran == [(1, [units.Gi, 4 * units.Gi]), (3, [units.Gi])]
    first, second = data['config']['clusters']
    assert first['error'] == 'PGs stuck' and 'error' not in second
    assert len(saved) == 1 and data['runs'] and data['wall_seconds'] >= 0
    page = output.text(data)
    assert '**1 OSD**' in page and '**FAILED**: PGs stuck' in page
