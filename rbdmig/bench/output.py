"""Write a bench run out: JSON, an RST page, a PNG chart."""

import json
import os

from oslo_utils import units

from rbdmig.bench import chart
from rbdmig.bench import drain
from rbdmig.bench import plan
from rbdmig.bench import report
from rbdmig.bench import targets

FAIRNESS = """\
How it is measured: every case starts from a **fresh volume**: created
anew (same size, 4 MiB objects), the same seeded data written into the
same extents, and its digest (every byte of every 4 MiB chunk holding
data read back, a chunk holding none counted as the zeros it reads as;
the sha256 of the chunks' sha256s) and its extents checked before the
case starts, so every case gets an identical input.  Every number is
the **median of the repetitions** (odd repetitions run the cases in
reverse order).  Each case runs in a process of its own;
Ceph's tools are timed as a **whole move**, the copy and the removal of
the source (``rbd cp`` + ``rbd rm``, ``rbd deep cp`` + ``rbd rm``,
``rbd migration prepare`` + ``execute`` + ``commit``), as rbdmig's
moves are timed from their first check to the source's removal
(verification included).  Cinder's generic loop and rbdmig's generic
copies are copies onto a destination created beforehand.  Host CPU is
user + system time of the process doing the work (the ``rbd`` CLI
children for Ceph's tools, the case's own process for librbd calls made
from Python, the extension included); OSD CPU is what the sandbox's
``ceph-osd`` processes used meanwhile (``/proc/<pid>/stat``): a copy
the OSDs make (``offload``, but also librbd's copies, whose I/O the OSDs
serve) shows up there, not on the host.  Behind the thin link, every
case (the ``rbd`` CLI, rbdmig's process, Cinder's loop) runs inside a
network namespace (``ip netns exec``) whose only route to the cluster
is a veth pair shaped by ``tc`` tbf on both ends; the cluster listens
on the pair's host end, and its OSDs talk to each other on the host.
"""

COLUMN_HELP = """\
Columns: *wall s* is the median wall time of the case; *MiB/s* is the
provisioned size over it; *host CPU* and *OSD CPU s/GiB* are CPU seconds
(user + system) per GiB provisioned, of the process that did the work
(the case's own process for librbd called from Python, the ``rbd`` CLI
for Ceph's tools), and of the sandbox's ``ceph-osd`` processes
meanwhile; *RSS MiB* is the peak RSS of the process that did the work
(the largest of the runs; ``VmHWM``: the Python cases include the
interpreter and its imports); *src MiB* and *dst MiB* are the source's
and the destination's allocated size (librbd ``diff_iterate``, which
counts from an object's start to its last written byte, or a file's
``st_blocks``); *sha256* compares the destination's digest with the
source's; *verify cost* is the case's time minus the same method's
with ``migration_verify = none`` on the same volume (seconds: what that
level of verification costs); *x bound* is the rate over the copy bound
1/(1/R + 1/W) of ``rbd bench`` sequential read R of the source pool and
write W of the destination pool; *x Ceph* and *x Cinder* are the
fastest of Ceph's three moves, and Cinder's generic loop, on the same
volume, over this case's time (above 1: faster than them).
"""

ISSUE_HELP = """\
Every target is computed from this run's own numbers (medians over the
repetitions); ratios of times are "baseline / case", so above 1 is
faster.  These are issue 14's, about the default method: its whole move
against the fastest of Ceph's three whole moves on full and 10 %
allocated volumes, and its rate against the copy bound; on the big thin
volume, it and ``offload`` against Ceph's moves, and their time over
their own move of a full volume holding as much data (the cost must
follow the data, not the provisioned size); behind the thin link,
against Ceph's moves made from behind the same link; its host CPU per
GiB over ``rbd deep cp``'s; and its peak RSS growth from the smallest
to the largest full volume.
"""

FLEET_HELP = """\
Issue 15's: the drain's wall time over its volumes, at ``rbdmig
drain``'s default parallelism with ``offload`` (the drain section below
says where the time went).
"""

TARGET_HELP = """\
The earlier issues' targets: ``offload`` against the fastest
of Ceph's whole moves; its host CPU per GiB over ``rbd deep cp``'s (the
OSDs' ratio is shown beside it); the 10%-allocated volume's time over
the full one's, with both destinations exactly as allocated as their
sources; and peak RSS growth from the smallest to the largest full
volume, under the memory the queue may hold.  The rest are kept from
the earlier bench: *same pool flat* is the full volume's same-pool time
at the largest size minus at the smallest; *allocated / data* is the
destination's allocated bytes over what the same data takes written
straight into that kind of backend; *progress on/off* is the case with
a real ``IntervalCallback`` (a line a second) over the same case
without.
"""


def _clusters_lines(data):
    lines = []
    for desc in data['config'].get('clusters', []):
        pgs = desc.get('pgs_per_osd') or {}
        lines.append(
            '* Sandbox **%s**: pools of size %s (one copy of each object), '
            '%s PGs per OSD; volumes of %s.' % (
                desc['name'], desc.get('pool_size', '?'),
                '/'.join(str(pgs[k]) for k in sorted(pgs)) or '?',
                ' and '.join(plan.size_text(s) for s in desc['sizes'])))
        if desc.get('link_mbit'):
            lines[-1] = (
                '* **%s**: the one-OSD sandbox, every case run from a '
                'network namespace whose only link to it is a veth pair '
                'shaped to %d Mbit/s each way (``tc`` tbf on both ends); '
                'volumes of %s.' % (desc['name'], desc['link_mbit'],
                                    ' and '.join(plan.size_text(s)
                                                 for s in desc['sizes'])))
        thin = desc.get('thin')
        if thin:
            lines[-1] = lines[-1][:-1] + (
                '; and a big thin volume of %s holding %s, at '
                'deterministic places.' % (plan.size_text(thin['size']),
                                           thin['fill']))
        if desc.get('error'):
            lines[-1] += '  **FAILED**: %s' % ' '.join(
                desc['error'].split())[:500]
    return lines


def text(data):
    """Return the run as RST: machine, targets, verify, ceiling, cases."""
    rows = data.get('summary') or report.summarize(data)
    machine, conf = data['machine'], data['config']
    out = ['================', 'rbdmig benchmark', '================', '',
           'Generated by ``rbdmig bench`` (%s to %s, %.0f minutes); do '
           'not edit.' % (data.get('started'), data.get('finished'),
                          data.get('wall_seconds', 0) / 60), '',
           '* Machine: %s, %d cores, %.1f GiB RAM, kernel %s; load average '
           '%.2f at start, %.2f at end.' % (
               machine['cpu'], machine['cores'],
               machine['ram_bytes'] / units.Gi, machine['kernel'],
               machine['load_at_start'][0],
               machine.get('load_at_end', [float('nan')])[0]),
           '* Ceph: objectstore **%s**, %s.' % (conf['objectstore'],
                                                machine['ceph'])]
    loads = sorted(r['load1'] for r in data.get('runs', []) if 'load1' in r)
    if loads:
        out[-2] = out[-2][:-1] + (
            '; at the cases\' starts median %.2f, highest %.2f.' % (
                loads[len(loads) // 2], loads[-1]))
    out += _clusters_lines(data)
    out += ['* Repetitions: %d (medians shown); default method %s, '
            '``migration_verify`` %s; rbdmig.ext %s.' % (
                conf['repeat'], conf['default_method'],
                conf.get('default_verify', 'extents'),
                'built' if conf.get('ext_available') else
                'NOT available (%s)' % conf.get('ext_reason')), '',
            FAIRNESS, 'Targets', '=======', '']
    found = data.get('targets') or targets.compute(data, rows)
    for group, title, help_text in (
            (targets.ISSUE, 'Issue 14: the default method', ISSUE_HELP),
            (targets.FLEET, 'Issue 15: a drain of many volumes',
             FLEET_HELP),
            (targets.EARLIER, 'Earlier issues', TARGET_HELP)):
        lines = [[t['target'], t['measured'], t['rule'], t['result']]
                 for t in found
                 if t.get('group', targets.EARLIER) == group]
        if lines:
            out += [title, '-' * len(title), '',
                    report.table(['target', 'measured', 'rule', 'result'],
                                 lines), '', help_text]
    verify = report.verify_table(data, rows)
    if verify:
        out += ['Cost of migration_verify', '=' * 24, '',
                'Whole moves (seconds, and %% over ``none``) of the same '
                'volume with each level (%s is the default).' % conf.get(
                    'default_verify', 'extents'), '', verify, '']
    out += drain.table_lines(data.get('drain', []))
    out += ['Cluster ceiling (rbd bench, 4 MiB, 16 threads, seq)', '=' * 51,
            '', report.ceiling_table(data), '', 'Cases', '=====', '',
            COLUMN_HELP]
    for title, tab in report.volume_tables(data, rows):
        out += [title, '-' * len(title), '', tab, '']
    return '\n'.join(out) + '\n'


def write(data, out_dir, stem='benchmark'):
    """Write ``<stem>.json``, ``.rst`` and ``.png`` into ``out_dir``.

    :returns: ``{'json': path, 'rst': path, 'png': path or None}``.
    """
    os.makedirs(out_dir, exist_ok=True)
    paths = {ext: os.path.join(out_dir, stem + '.' + ext)
             for ext in ('json', 'rst', 'png')}
    data = dict(data, summary=report.summarize(data))
    data['targets'] = targets.compute(data, data['summary'])
    with open(paths['json'], 'w') as f:
        json.dump(data, f, indent=1, sort_keys=True)
    with open(paths['rst'], 'w') as f:
        f.write(text(data))
    if not chart.draw(data, paths['png']):
        paths['png'] = None
    return paths
