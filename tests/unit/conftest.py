"""Hypothesis' settings for the unit tests, and the bad inputs they tried.

Every test that feeds rbdmig bad input records each one with the
``bad_input`` fixture, under a category and rbdmig's answer; the totals
are printed at the end of the run ("bad inputs tried") and, when
``RBDMIG_BAD_INPUT_TABLE`` names a file, written there as the table
doc/reliability.rst includes.  Examples are derandomized, so the same
set of test files tries the same inputs every time.

They run against the in-memory fake, without the compiled extension:
rbdmig.ext connects to real clusters by itself, and the fake's clusters
are not there (test_ext.py sets the variable as it needs).
"""

import collections
import os

import pytest
from hypothesis import HealthCheck, settings

from rbdmig import ext
from rbdmig import faults
# The database fixtures, for every unit test module: db, db_url and
# empty_db_url (SQLite and PostgreSQL in turn), the session's PostgreSQL
# server and its database.
from tests.unit.db_fixtures import (  # noqa: F401
    db, db_url, empty_db_url, postgresql, postgresql_schema)

settings.register_profile(
    'rbdmig', deadline=None, database=None, derandomize=True,
    print_blob=True,
    # bad_input is function-scoped on purpose: it only counts.
    suppress_health_check=[HealthCheck.function_scoped_fixture,
                           HealthCheck.too_slow])
settings.load_profile('rbdmig')

_TRIED = pytest.StashKey[collections.Counter]()


def pytest_configure(config):
    config.stash[_TRIED] = collections.Counter()


@pytest.fixture
def bad_input(request):
    """Return ``record(category, answer, n=1)``: ``n`` inputs tried."""
    counter = request.config.stash[_TRIED]

    def record(category, answer, n=1):
        counter[(category, answer)] += n
    return record


def _rows(counter):
    """``[(category, total, 'answer n, ...')]``, sorted by category."""
    by_category = collections.defaultdict(dict)
    for (category, answer), n in counter.items():
        by_category[category][answer] = n
    return [(category, sum(answers.values()),
             ', '.join('%s %d' % item for item in sorted(answers.items())))
            for category, answers in sorted(by_category.items())]


def _table(rows):
    lines = ['.. list-table::', '   :header-rows: 1',
             '   :widths: 40 12 48', '',
             '   * - Input', '     - Tried', '     - rbdmig answered']
    for category, total, answers in rows:
        lines += ['   * - %s' % category, '     - %d' % total,
                  '     - %s' % answers]
    lines += ['   * - **all of the above**',
              '     - **%d**' % sum(row[1] for row in rows), '     -']
    return '\n'.join(lines) + '\n'


def pytest_terminal_summary(terminalreporter, config):
    counter = config.stash.get(_TRIED, None)
    if not counter:
        return
    rows = _rows(counter)
    terminalreporter.write_sep('-', 'bad inputs tried')
    for category, total, answers in rows:
        terminalreporter.write_line('%-36s %6d  (%s)' % (
            category, total, answers))
    terminalreporter.write_line('%-36s %6d' % (
        'all of the above', sum(row[1] for row in rows)))
    path = os.environ.get('RBDMIG_BAD_INPUT_TABLE')
    if path:
        with open(path, 'w') as out:
            out.write(_table(rows))
        terminalreporter.write_line('written to %s' % path)


@pytest.fixture(autouse=True)
def _transactions_write_first():
    """Fail a test in which a guarded API broke the write-first rule,
    even if the code under test caught the error (db_fixtures.guarded)."""
    from tests.unit import db_fixtures
    del db_fixtures.VIOLATIONS[:]
    yield
    broken, db_fixtures.VIOLATIONS[:] = list(db_fixtures.VIOLATIONS), []
    assert not broken, 'transactions read before they wrote: %s' % broken


@pytest.fixture(autouse=True)
def _no_extension(monkeypatch):
    monkeypatch.setenv(ext.DISABLE_ENV, '1')


@pytest.fixture
def at_point(monkeypatch):
    """``at_point[name] = action``: run ``action()`` once, when a crash
    point ``name`` is reached (:mod:`rbdmig.faults`)."""
    actions = {}

    def hook(name):
        action = actions.pop(name, None)
        if action is not None:
            action()

    monkeypatch.setattr(faults.POINTS, 'hook', hook)
    return actions
