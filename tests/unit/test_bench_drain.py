"""The bench's drain case: its plan, its per-volume breakdown, its page."""

import itertools

from rbdmig.bench import command
from rbdmig.bench import drain
from rbdmig.cmd import main as cli
from rbdmig.cmd import migrations


def _parse(*argv):
    return cli._parser().parse_args(['bench'] + list(argv))


def test_one_drain_per_parallelism_none_for_no_volumes():
    steps = drain.plan(1000, [1, 2, 2, 16])
    assert [(s['volumes'], s['parallel']) for s in steps] == [
        (1000, 1), (1000, 2), (1000, 16)]
    assert steps[0]['label'] == 'drain 1000 x 1 GiB thin, parallel 1'
    assert drain.plan(0, [2]) == []


def test_drain_options_parse():
    args = _parse('--drain-volumes', '0', '--drain-parallel', '1', '8')
    assert (args.drain_volumes, args.drain_parallel) == (0, [1, 8])
    args = _parse()
    assert args.drain_volumes is None and args.drain_parallel is None
    assert command.DEFAULT_DRAIN_VOLUMES == 1000
    assert command.QUICK_DRAIN_VOLUMES <= 20
    assert migrations.DRAIN_PARALLEL <= migrations.DRAIN_MAX


def test_recorder_splits_each_threads_time_between_points():
    ticks = itertools.count()
    rec = drain.Recorder(clock=lambda: float(next(ticks)))
    # Two volumes, one after the other, on one thread: 0..4, 5..9.
    for _ in range(2):
        for name in (drain.BEGIN, drain.CLAIMED, 'service.migrating',
                     'service.success', drain.END):
            rec(name)
    assert dict(rec.seconds) == {
        'drain.begin -> drain.claimed': 2.0,
        'drain.claimed -> service.migrating': 2.0,
        'service.migrating -> service.success': 2.0,
        'service.success -> drain.end': 2.0}
    rows = drain.breakdown(rec.seconds, rec.counts, 2)
    assert {r['segment']: r['per_volume'] for r in rows} == {
        s: 1.0 for s in rec.seconds}
    assert all(r['count'] == 2 for r in rows)


def test_a_point_outside_a_move_is_not_counted():
    rec = drain.Recorder(clock=lambda: 0.0)
    rec('engine.claimed')  # no move began on this thread
    assert not rec.seconds


def _row(**kw):
    row = {'label': 'drain 20 x 1 GiB thin, parallel 2', 'ok': True,
           'volumes': 20, 'parallel': 2,
           'seconds': 10.0, 'per_volume': 0.5, 'moved': 20,
           'method': 'offload', 'process_start': 0.7,
           'breakdown': [{'segment': 'a -> b', 'per_volume': 0.25,
                          'count': 20}]}
    row.update(kw)
    return row


def test_runs_are_summarized_and_tabled():
    lines = drain.summarize(_row())
    assert ('0.500 s wall per volume (20 moved, method offload, 0 by the '
            'generic copy)' in lines[0])
    assert 'a -> b' in lines[1] and '0.2500' in lines[1]
    assert 'FAILED: boom' in drain.summarize(
        _row(ok=False, error='boom'))[0]
    page = '\n'.join(drain.table_lines([_row(), _row(
        ok=False, label='drain 20 x 1 GiB thin, parallel 4')]))
    assert 'Drain: orchestration cost per volume' in page
    assert '0.500' in page and 'FAILED' in page and '0.2500' in page
    assert drain.table_lines([]) == []


def test_drain_target_is_judged_at_the_offload_default_only():
    from rbdmig.bench import targets

    c = targets._Checks({'config': {'default_method': 'offload'}}, [])
    c.group = targets.FLEET
    default = migrations.DRAIN_PARALLEL_OFFLOAD
    targets._drain(c, [
        _row(parallel=default, per_volume=0.15),
        _row(parallel=default + 1, per_volume=9.0),  # not the default
        _row(parallel=default, per_volume=0.25),
        _row(parallel=default, ok=False)])
    assert [(t['measured'], t['result']) for t in c.lines] == [
        ('0.150 s', 'PASS'), ('0.250 s', 'FAIL'),
        ('case failed or missing', 'FAIL')]
    assert all(t['group'] == targets.FLEET and t['rule'] == '<= 0.20 s'
               for t in c.lines)

