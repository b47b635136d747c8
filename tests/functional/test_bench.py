"""``rbdmig bench --quick`` end to end: every case runs and verifies.

Only that the bench works is checked here, never how fast anything is.
"""

import importlib.util
import json
import subprocess
import sys

from rbdmig.bench import plan
from rbdmig.ceph import methods as rbd_methods


def test_quick_bench_runs_every_case_and_every_checksum_matches(tmp_path):
    out = tmp_path / 'out'
    proc = subprocess.run(
        (sys.executable, '-m', 'rbdmig.cmd.main', 'bench', '--quick',
         '--output-dir', str(out), '--workdir', str(tmp_path / 'ceph')),
        capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    data = json.loads((out / 'benchmark.json').read_text())
    assert data['machine']['objectstore'] == 'memstore'
    clusters = {c['name']: c for c in data['config']['clusters']}
    # A one-OSD sandbox runs every case, a three-OSD one the moves.
    assert sorted(clusters) == ['1 OSD', '3 OSDs']
    three = clusters['3 OSDs']
    assert three['pool_size'] == 1
    assert sorted(three['pgs_per_osd'].values()) == [5, 5, 6]
    for name, osds in (('1 OSD', 1), ('3 OSDs', 3)):
        labels = [step['label'] for step in plan.plan(osds)]
        for method in rbd_methods.METHODS:
            assert 'rbdmig ' + method in labels
        assert clusters[name]['cases'] == labels
        for fill in ('full', '10%'):
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
    assert all(row['ok'] for row in data['ceiling'])
    assert {t['result'] for t in data['targets']} <= {'PASS', 'FAIL', 'N/A'}
    page = (out / 'benchmark.rst').read_text()
    assert 'Targets' in page and 'Cost of migration_verify' in page
    assert '3 OSDs: 64 MiB volume, full' in page
    if importlib.util.find_spec('matplotlib'):
        assert (out / 'benchmark.png').read_bytes()[:4] == b'\x89PNG'
    # The sandboxes were stopped and their directory removed.
    assert not (tmp_path / 'ceph').exists()
