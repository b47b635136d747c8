"""``rbdmig bench --quick`` end to end: every case runs and verifies.

Only that the bench works is checked here, never how fast anything is.
"""

import importlib.util
import json
import subprocess
import sys

from rbdmig.bench import runner
from rbdmig.ceph import methods as rbd_methods


def test_quick_bench_runs_every_case_and_every_checksum_matches(tmp_path):
    out = tmp_path / 'out'
    proc = subprocess.run(
        (sys.executable, '-m', 'rbdmig.cmd.main', 'bench', '--quick',
         '--output-dir', str(out), '--workdir', str(tmp_path / 'ceph')),
        capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    data = json.loads((out / 'benchmark.json').read_text())
    labels = [step['label'] for step in runner.plan()]
    for method in rbd_methods.METHODS:
        assert 'rbdmig ' + method in labels
    assert data['config']['cases'] == labels
    assert data['machine']['objectstore'] == 'memstore'
    for fill in ('full', '10%', '1%'):
        done = {r['case']: r for r in data['runs'] if r['fill'] == fill}
        assert sorted(done) == sorted(labels), fill
        for case, row in done.items():
            assert row['ok'] and row['checksum_ok'], (fill, case, row)
            assert row['seconds'] > 0 and row['peak_rss'] > 0
    assert all(row['ok'] for row in data['ceiling'])
    assert {t['result'] for t in data['targets']} <= {'PASS', 'FAIL', 'N/A'}
    assert 'Targets' in (out / 'benchmark.rst').read_text()
    if importlib.util.find_spec('matplotlib'):
        assert (out / 'benchmark.png').read_bytes()[:4] == b'\x89PNG'
    # The sandbox was stopped and its directory removed.
    assert not (tmp_path / 'ceph').exists()
