"""``rbdmig bench --quick`` end to end: every case runs and verifies.

Only that the bench works is checked here, never how fast anything is,
but for one bound no machine beats: the link's own rate.
"""

import importlib.util
import json
import re
import subprocess
import sys

from oslo_utils import units

from rbdmig.bench import plan
from rbdmig.ceph import methods as rbd_methods

LINK = '1 OSD behind 800 Mbit/s'


def _namespaces():
    out = subprocess.run(('ip', 'netns', 'list'), capture_output=True,
                         text=True, check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def _check_cluster(data, name, labels, fills):
    for fill in fills:
        runs = [r for r in data['runs']
                if (r['cluster'], r['fill']) == (name, fill)]
        done = {r['case']: r for r in runs}
        assert len(runs) == len(labels)
        assert sorted(done) == sorted(labels), (name, fill)
        for case, row in done.items():
            assert row['ok'] and row['checksum_ok'], (name, fill, row)
            assert row['seconds'] > 0 and row['peak_rss'] > 0
            assert row['src_allocated'] > 0
            if row.get('method'):
                assert row['method_used'] == row['method']
        # Every case had the same input.
        assert len({r['src_allocated'] for r in runs
                    if r['src'] != 'files'}) == 1
    return [r for r in data['runs'] if r['cluster'] == name]


def test_quick_bench_runs_every_case_and_every_checksum_matches(tmp_path):
    out = tmp_path / 'out'
    before = _namespaces()
    proc = subprocess.run(
        (sys.executable, '-m', 'rbdmig.cmd.main', 'bench', '--quick',
         '--output-dir', str(out), '--workdir', str(tmp_path / 'ceph')),
        capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    data = json.loads((out / 'benchmark.json').read_text())
    assert data['machine']['objectstore'] == 'memstore'
    clusters = {c['name']: c for c in data['config']['clusters']}
    # A one-OSD sandbox runs every case, a three-OSD one the moves, and
    # the one-OSD sandbox every contender again from behind the link.
    assert sorted(clusters) == ['1 OSD', LINK, '3 OSDs']
    # The drain case: a few thin volumes, every one moved by offload.
    drain, = data['drain']
    assert drain['ok'] and drain['moved'] == drain['volumes'] == 20
    assert drain['generic'] == 0 and drain['breakdown']
    three = clusters['3 OSDs']
    assert three['pool_size'] == 1
    assert sorted(three['pgs_per_osd'].values()) == [5, 5, 6]
    for name, osds, fills in (('1 OSD', 1, ('full', '10%')),
                              ('3 OSDs', 3, ('full',))):
        labels = [step['label'] for step in plan.plan(osds)]
        for method in rbd_methods.METHODS:
            assert 'rbdmig ' + method in labels
        assert clusters[name]['cases'] == labels
        _check_cluster(data, name, labels, fills)

    # The big thin volume: 1 GiB holding 64 MiB in 16 objects, moved by
    # every contender but Cinder's loop (the verify levels are left to
    # the full volumes), exactly as thin.
    thin = clusters['1 OSD']['thin']
    assert (thin['size'], thin['data']) == (units.Gi, 64 * units.Mi)
    rows = _check_cluster(data, '1 OSD', [
        s['label'] for s in plan.plan_thin(verify=False)], [thin['fill']])
    assert {(r['src_allocated'], r['dst_allocated']) for r in rows
            if r['fill'] == thin['fill']} == {(64 * units.Mi,) * 2}

    # Behind the link: every contender, in the namespace.  Cinder's loop
    # reads the 64 MiB through it: no faster than 800 Mbit/s.
    link = clusters[LINK]
    assert link['link_mbit'] == 800
    rows = _check_cluster(data, LINK, [s['label'] for s in
                                       plan.plan_link()], ['full'])
    cinder = [r for r in rows if r['case'] == plan.CINDER][0]
    assert cinder['seconds'] >= 64 * units.Mi * 8 / 800e6
    # The namespace and its veth pair were removed.
    assert _namespaces() <= before
    links = subprocess.run(('ip', '-o', 'link'), capture_output=True,
                           text=True, check=True).stdout
    assert not re.search(r'\brbl[0-9a-f]{8}[hn]\b', links)

    assert all(row['ok'] for row in data['ceiling'])
    assert {t['result'] for t in data['targets']} <= {'PASS', 'FAIL', 'N/A'}
    assert any(LINK in t['target'] for t in data['targets'])
    page = (out / 'benchmark.rst').read_text()
    assert 'Issue 14: the default method' in page
    assert 'Cost of migration_verify' in page and 'verify cost' in page
    assert '3 OSDs: 64 MiB volume, full' in page
    assert LINK + ': 64 MiB volume, full' in page
    if importlib.util.find_spec('matplotlib'):
        assert (out / 'benchmark.png').read_bytes()[:4] == b'\x89PNG'
    # The sandboxes were stopped and their directory removed.
    assert not (tmp_path / 'ceph').exists()
