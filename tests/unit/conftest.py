"""Hypothesis' settings for the unit tests, and the bad inputs they tried.

Every test that feeds rbdmig bad input records each one with the
``bad_input`` fixture, under a category and rbdmig's answer; the totals
are printed at the end of the run ("bad inputs tried"), and are the
numbers doc/reliability.rst quotes.  Examples are derandomized, so a run
tries the same inputs, and counts the same, every time.
"""

import collections

import pytest
from hypothesis import HealthCheck, settings

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


def pytest_terminal_summary(terminalreporter, config):
    counter = config.stash.get(_TRIED, None)
    if not counter:
        return
    by_category = collections.defaultdict(dict)
    for (category, answer), n in counter.items():
        by_category[category][answer] = n
    terminalreporter.write_sep('-', 'bad inputs tried')
    for category in sorted(by_category):
        answers = by_category[category]
        detail = ', '.join('%s %d' % (answer, n)
                           for answer, n in sorted(answers.items()))
        terminalreporter.write_line('%-28s %6d  (%s)' % (
            category, sum(answers.values()), detail))
