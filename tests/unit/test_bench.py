"""The bench's arithmetic: sizes, data, plans, medians, ratios, targets."""

import argparse
import hashlib
import io
import json
import os

import pytest
from oslo_utils import units

from rbdmig.bench import cases
from rbdmig.bench import chart
from rbdmig.bench import command
from rbdmig.bench import link as thin_link
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


def test_an_assisted_case_sets_the_options_it_names_before_moving():
    """What ``tools/offload_threshold.py`` varies reaches the move."""
    from rbdmig import objects

    done = []

    class Conf:
        def set_override(self, name, value, group):
            done.append((name, value, group))

    class Manager:
        @staticmethod
        def migrate(context, volume, src, dst, **kwargs):
            done.append(('migrate', volume.name, src, dst))
            return argparse.Namespace(path='assisted')

    spec = {'kind': cases.ASSISTED, 'method': 'offload', 'verify': None,
            'options': {'rbd_offload_through_host_below': 1.0},
            'name': 'v', 'size': units.Gi, 'size_gib': 1, 'src': 'a',
            'dst': 'b'}
    found = cases._run_rbdmig(spec, Conf(), {'a': 'A', 'b': 'B'}, objects,
                              None, Manager)

    assert done == [('rbd_migration_method', 'offload', 'a'),
                    ('rbd_offload_through_host_below', 1.0, 'a'),
                    ('migrate', 'v', 'A', 'B')]
    assert found['path'] == 'assisted'


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


def test_extents_just_listed_are_not_listed_again(tmp_path):
    vols = volumes.Cluster.__new__(volumes.Cluster)
    vols.file_dir = str(tmp_path)
    size = 2 * volumes.CHUNK
    with open(tmp_path / 'vol', 'wb') as f:
        f.truncate(size)
        os.pwrite(f.fileno(), b'x' * units.Mi, volumes.CHUNK)
    found = vols.extents(volumes.FILE, 'vol')
    assert found == [[volumes.CHUNK, units.Mi]]
    image = bytearray(size)
    image[volumes.CHUNK:volumes.CHUNK + units.Mi] = b'x' * units.Mi
    assert vols.digest(volumes.FILE, 'vol') == _tree(image)
    assert vols.digest(volumes.FILE, 'vol', found) == _tree(image)
    # Given extents are what the digest reads: none, it reads nothing.
    assert vols.digest(volumes.FILE, 'vol', []) == _tree(bytearray(size))


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


def test_the_default_offload_is_judged_once_as_thin():
    runs = [_run('rbdmig offload', 4.0), _run('rbdmig offload', 0.5,
                                              fill='10%')]
    data = _data(runs, default='offload')
    lines = [t for t in targets.compute(data, report.summarize(data))
             if t['target'].startswith('rbdmig offload 10% time / full')]
    assert [(t['measured'][:5], t['result']) for t in lines] == [
        ('0.125', 'PASS')]


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
                    checkpoint=None, **options):
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


# -- issue 14: the thin link, the big thin volume, verification's cost --

LINK = '1 OSD behind 800 Mbit/s'
THIN_FILL = '1 GiB in 4 MiB pieces'


def test_the_big_thin_volume_and_the_link_plan_their_contenders():
    thin = [s['label'] for s in plan.plan_thin()]
    link = [s['label'] for s in plan.plan_link()]
    for label in list(cases.CLI_KINDS) + ['rbdmig ' + m
                                          for m in rbd_methods.METHODS]:
        assert label in thin and label in link
    # Cinder's loop would write all 256 GiB: behind the link only.
    assert report.CINDER in link and report.CINDER not in thin
    default = plan.default_method()
    for level in set(plan.VERIFY_LEVELS) - {
            plan.option_default('migration_verify')}:
        assert 'rbdmig %s verify=%s' % (default, level) in thin
    assert [s['label'] for s in plan.plan_thin(verify=False)] == [
        s for s in thin if 'verify=' not in s]
    assert plan.link_label(1, 800) == LINK
    assert plan.thin_fill(units.Gi) == THIN_FILL
    # Every case there is a case of the one-OSD plan: one order for all.
    one = [s['label'] for s in plan.plan(1)]
    assert set(thin) <= set(one) and set(link) <= set(one)


def test_the_big_thin_volume_holds_its_data_in_whole_scattered_objects():
    size, data = 2 * units.Gi, 64 * units.Mi
    vol = plan.describe(ONE, size, plan.thin_fill(data), size,
                          data_bytes=data)
    assert vol['fill'] == '64 MiB in 4 MiB pieces'
    assert vol['name'] == 'bench-2048m-thin' and vol['data_bytes'] == data
    slots = volumes.chosen_extents(size, vol['fraction'], vol['seed'],
                                   vol['piece'])
    per = volumes.CHUNK // volumes.EXTENT
    assert len(slots) == data // volumes.EXTENT
    objects = sorted({s // per for s in slots})
    assert len(objects) == data // volumes.CHUNK
    assert objects[-1] - objects[0] > size // volumes.CHUNK // 2  # scattered
    assert slots == volumes.chosen_extents(size, vol['fraction'],
                                           vol['seed'], vol['piece'])
    # The digest of 2 GiB, from its 16 objects only, is the whole tree.
    image = bytearray(size)
    for chunk, offset in volumes._runs(volumes.extent_data(vol['seed']),
                                       slots):
        image[offset:offset + len(chunk)] = chunk
    assert vol['sha256'] == _tree(image)


def test_the_link_is_a_namespace_behind_a_veth_pair_shaped_both_ways():
    import ipaddress

    net = ipaddress.ip_network('10.213.7.8/30')
    link = thin_link.Link(800, subnet=net, tag='00abcd12')
    assert (link.host_ip, link.ns_ip) == ('10.213.7.9', '10.213.7.10')
    assert link.netns == 'rbdmig-bench-00abcd12'
    assert max(len(link.host_dev), len(link.ns_dev)) <= 15
    cmds = link.setup_commands()
    assert cmds[0] == ('ip', 'netns', 'add', link.netns)
    assert ('ip', 'link', 'add', link.host_dev, 'type', 'veth', 'peer',
            'name', link.ns_dev, 'netns', link.netns) in cmds
    # Every address of the host, through the link (a fleet's hosts reach
    # a cluster on another link's host end).
    assert ('ip', 'netns', 'exec', link.netns, 'ip', 'route', 'add',
            'default', 'via', link.host_ip) in cmds
    tbf = [c for c in cmds if 'tbf' in c]
    assert len(tbf) == 2
    host, inside = tbf
    assert host[:5] == ('tc', 'qdisc', 'add', 'dev', link.host_dev)
    assert inside[:4] == ('ip', 'netns', 'exec', link.netns)
    assert inside[4:9] == ('tc', 'qdisc', 'add', 'dev', link.ns_dev)
    for cmd in tbf:
        assert cmd[cmd.index('rate') + 1] == '800mbit'
        assert int(cmd[cmd.index('burst') + 1]) >= 64 * units.Ki
    assert link.wrap(('rbd', 'ls')) == ('ip', 'netns', 'exec', link.netns,
                                        'rbd', 'ls')
    assert link.teardown_commands()[0] == ('ip', 'netns', 'delete',
                                           link.netns)
    taken = [ipaddress.ip_network('10.213.0.0/17')]
    for _ in range(20):
        assert not thin_link.free_subnet(taken).overlaps(taken[0])


def test_the_link_is_removed_when_making_it_fails(monkeypatch):
    import ipaddress

    ran = []

    def run(cmd, **kwargs):
        ran.append(tuple(cmd))
        # tbf fails; afterwards, neither the namespace nor the host's end
        # is found any more.
        fail = cmd[:3] in (('ip', 'link', 'show'),
                           ('ip', 'netns', 'pids')) or 'tbf' in cmd
        return subprocess_result(1 if fail else 0)

    monkeypatch.setattr(thin_link, 'missing', lambda: [])
    monkeypatch.setattr(thin_link.subprocess, 'run', run)
    link = thin_link.Link(100, subnet=ipaddress.ip_network('10.213.0.0/30'))
    with pytest.raises(thin_link.LinkError, match='tbf'):
        with link:
            pass
    assert ran[-4:-2] == link.teardown_commands()
    assert not link.up


def test_an_error_behind_the_link_is_not_hidden_by_its_removal(
        monkeypatch):
    import ipaddress

    # Every command works, but the namespace is still found afterwards.
    monkeypatch.setattr(thin_link, 'missing', lambda: [])
    monkeypatch.setattr(thin_link.subprocess, 'run',
                        lambda cmd, **kwargs: subprocess_result(0))
    link = thin_link.Link(100, subnet=ipaddress.ip_network('10.213.0.4/30'))
    with pytest.raises(RuntimeError, match='the sandbox failed'):
        with link:
            raise RuntimeError('the sandbox failed')
    with pytest.raises(thin_link.LinkError, match='namespace rbdmig-bench'):
        with thin_link.Link(100, subnet=link.subnet):
            pass


def subprocess_result(code):
    import subprocess

    return subprocess.CompletedProcess((), code, stdout='', stderr='boom')


def test_without_root_or_tools_the_link_says_what_is_missing(monkeypatch):
    monkeypatch.setattr(thin_link.os, 'geteuid', lambda: 1000)
    monkeypatch.setattr(thin_link.shutil, 'which',
                        lambda tool: None if tool == 'tc' else '/bin/ip')
    assert thin_link.missing() == ['root', 'tc']
    with pytest.raises(thin_link.LinkError) as err:
        thin_link.check(800)
    message = str(err.value)
    assert 'missing: root, tc.' in message and '--link-mbit 0' in message
    thin_link.check(0)  # the case left out: nothing is needed
    parser = argparse.ArgumentParser()
    command.add_parser(parser.add_subparsers())
    args = parser.parse_args(['bench', '--quick'])
    assert args.link_mbit == command.DEFAULT_LINK_MBIT
    out = io.StringIO()
    assert command.run(args, out=out) == 2
    assert 'missing: root, tc.' in out.getvalue()


def test_a_thin_size_must_exceed_the_data_it_holds():
    parser = argparse.ArgumentParser()
    command.add_parser(parser.add_subparsers())
    for bad in ('64M', '66M'):
        args = parser.parse_args(['bench', '--quick', '--link-mbit', '0',
                                  '--thin-size', bad])
        out = io.StringIO()
        assert command.run(args, out=out) == 2
        assert '--thin-size must be' in out.getvalue()
    assert parser.parse_args(['bench', '--thin-size', '0']).thin_size == 0


def _issue_runs(cluster, size, default, deep, tenth, cpu=0.1, rss=0):
    return [
        _run('rbd deep cp', deep, size=size, cluster=cluster),
        _run('rbd deep cp', deep / 5, fill='10%', size=size,
             cluster=cluster),
        _run('rbdmig extents', default, size=size, cluster=cluster,
             cpu_user=deep * cpu, peak_rss=(100 + rss) * units.Mi),
        _run('rbdmig extents', tenth, fill='10%', size=size,
             cluster=cluster)]


def _issue_data():
    gib, four, big = units.Gi, 4 * units.Gi, 256 * units.Gi
    runs = (_issue_runs(ONE, gib, 4.0, 4.0, 0.6)        # 1.0x, 1.33x
            + _issue_runs(ONE, four, 22.0, 15.0, 3.0, cpu=0.2, rss=70)
            + _issue_runs(THREE, gib, 3.0, 3.3, 0.6)
            + [_run('rbdmig offload', 2.0),
               _run('rbd cp', 4.0, size=big, fill=THIN_FILL),
               _run('rbdmig extents', 3.0, size=big, fill=THIN_FILL),
               _run('rbdmig offload', 3.5, size=big, fill=THIN_FILL),
               _run('rbd deep cp', 16.0, cluster=LINK),
               _run('rbdmig extents', 13.0, cluster=LINK)])
    data = _data(runs, clusters=((ONE, 1, [gib, four]),
                                 (THREE, 3, [gib]), (LINK, 1, [gib])),
                 default='extents')
    desc = data['config']['clusters']
    desc[0]['thin'] = {'size': big, 'data': gib, 'fill': THIN_FILL}
    desc[2].update(link_mbit=800, fills=['full'])
    return data


def test_issue_14_targets_pass_and_fail_on_the_numbers():
    data = _issue_data()
    lines = targets.compute(data, report.summarize(data))
    issue = [t for t in lines if t['group'] == targets.ISSUE]
    assert lines[:len(issue)] == issue  # issue 14's table comes first
    found = {t['target']: (t['result'], t['measured']) for t in issue}
    one, four = ', 1 OSD, 1024 MiB', ', 1 OSD, 4096 MiB'
    name = 'rbdmig extents full vs fastest Ceph move'
    assert found[name + one] == ('PASS', '1.000 (rbd deep cp)')
    assert found[name + four][0] == 'FAIL'  # 15/22
    assert found[name + ', 3 OSDs, 1024 MiB'][0] == 'PASS'
    # 1 GiB in 4 s is 256 MiB/s, 4 GiB in 22 s 186; the bound is 200.
    assert found['rbdmig extents full vs copy bound' + one][0] == 'PASS'
    assert found['rbdmig extents full vs copy bound' + four][0] == 'FAIL'
    tenth = 'rbdmig extents 10% vs fastest Ceph move'
    assert found[tenth + one][0] == 'PASS'     # 0.8/0.6
    assert found[tenth + four][0] == 'FAIL'    # 3.0/3.0
    cpu = 'rbdmig extents full host CPU/GiB vs rbd deep cp'
    assert found[cpu + one][0] == 'PASS' and found[cpu + four][0] == 'FAIL'
    rss = 'peak RSS growth, rbdmig extents, %s, %s'
    assert found[rss % (ONE, '1024 MiB -> 4096 MiB')] == ('FAIL', '+70 MiB')
    assert found[rss % (THREE, '1024 MiB -> 1024 MiB')][0] == 'N/A'
    thin = ', 1 OSD, 262144 MiB with ' + THIN_FILL
    # Against rbd cp's 4 s: extents 1.33x, offload 1.14x; against their
    # full 1 GiB moves (4 s and 2 s): 0.75 and 1.75.
    assert found['rbdmig extents vs fastest Ceph move' + thin] == (
        'PASS', '1.333 (rbd cp)')
    assert found['rbdmig offload vs fastest Ceph move' + thin][0] == 'FAIL'
    assert found['rbdmig extents time / full 1024 MiB' + thin][0] == 'PASS'
    assert found['rbdmig offload time / full 1024 MiB' + thin][0] == 'FAIL'
    # Behind the link: 16/13 is not 3x.
    assert found['rbdmig extents full vs fastest Ceph move, ' + LINK
                 + ', 1024 MiB'] == ('FAIL', '1.231 (rbd deep cp)')
    # The link is no cluster of its own to the other targets.
    assert not [t for t in lines if LINK in t['target']
                and t['group'] == targets.EARLIER]


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


def test_the_page_and_chart_show_the_link_and_the_big_thin_volume(tmp_path):
    data = _issue_data()
    data['volumes'] += [
        {'cluster': ONE, 'size': 256 * units.Gi, 'fill': THIN_FILL,
         'allocated': units.Gi, 'rbd_extents': 256, 'sha256': 'cd'},
        {'cluster': LINK, 'size': units.Gi, 'fill': 'full',
         'allocated': units.Gi, 'rbd_extents': 1, 'sha256': 'ef',
         'link_mbit': 800}]
    data.update(started='s', finished='f')
    paths = output.write(data, str(tmp_path))
    page = open(paths['rst']).read()
    assert page.index('Issue 14: the default method') < page.index(
        'Earlier issues')
    assert '1 OSD: 262144 MiB volume, holding %s' % THIN_FILL in page
    assert '%s: 1024 MiB volume, full allocated' % LINK in page
    assert '* **%s**: the one-OSD sandbox' % LINK in page
    assert 'a big thin volume of 256 GiB holding %s' % THIN_FILL in page
    panels = chart._specials(data, {
        (r['cluster'], r['size'], r['fill'], r['case']): r
        for r in report.summarize(data)})
    assert [p[0] for p in panels] == [
        LINK + ', full 1024 MiB volume',
        '1 OSD: 256 GiB volume holding ' + THIN_FILL]
    assert chart.draw(data, str(tmp_path / 'c.png'))
    assert (tmp_path / 'c.png').read_bytes()[:4] == b'\x89PNG'
