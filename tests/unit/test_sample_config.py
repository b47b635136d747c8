"""The committed sample config is what oslo-config-generator makes now."""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
SAMPLE = ROOT / 'etc' / 'rbdmig' / 'rbdmig.conf.sample'
GENERATOR = ROOT / 'etc' / 'rbdmig' / 'rbdmig-config-generator.conf'


def test_sample_config_is_current(tmp_path):
    out = tmp_path / 'rbdmig.conf.sample'
    subprocess.run(
        [sys.executable, '-m', 'oslo_config.generator',
         '--config-file', str(GENERATOR),
         '--output-file', str(out)],
        check=True, cwd=ROOT)
    assert out.read_text() == SAMPLE.read_text(), (
        'etc/rbdmig/rbdmig.conf.sample is stale: run "tox -e genconfig" '
        'and commit the result.')
