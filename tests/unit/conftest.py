"""Unit tests run against the in-memory fake: no compiled extension.

rbdmig.ext connects to real clusters by itself; the fake's clusters are
not there.  Its own unit tests (test_ext.py) set the variable as they
need.
"""

import pytest

from rbdmig import ext


@pytest.fixture(autouse=True)
def _no_extension(monkeypatch):
    monkeypatch.setenv(ext.DISABLE_ENV, '1')
