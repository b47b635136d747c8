"""The targets, each PASS/FAIL from the numbers of the same run."""

from oslo_utils import units

from rbdmig.bench import cases
from rbdmig.bench import report

# Issue 14's table, about the default method (and offload on the big
# thin volume); ratios of times are "fastest Ceph move / case".
ISSUE = 'issue 14'
EARLIER = 'earlier'
DEFAULT_VS_CEPH = 1.0     # full volumes, every cluster and size
DEFAULT_VS_BOUND = 0.95   # rate over the copy bound, full volumes
SPARSE_VS_CEPH = 1.25     # 10% allocated volumes
THIN_VS_CEPH = 1.25       # the big thin volume, default and offload
THIN_VS_FULL = 1.5        # its time over the same method's full volume
LINK_VS_CEPH = 3.0        # behind the thin link, full volume
DEFAULT_CPU_VS_DEEP_CP = 0.15  # host CPU per GiB, full volumes
RSS_GROWTH = 64 * units.Mi     # peak RSS, smallest to largest volume

# Issue 15's: a drain's orchestration cost per volume, at rbdmig drain's
# default parallelism for offload (what the bench's drain moves by).
FLEET = 'issue 15'
DRAIN_PER_VOLUME = 0.2    # seconds of wall time per volume

# An earlier issue's targets ("Performance: server-side copy").
OFFLOAD = 'rbdmig offload'
OFFLOAD_VS_CEPH = 1.25   # one OSD: fastest Ceph tool's move / offload's
OFFLOAD_VS_CEPH_MULTI = 1.5  # the same, more than one OSD
CPU_VS_DEEP_CP = 0.15    # host CPU per GiB, offload over rbd deep cp
SPARSE_SHARE = 0.2       # 10%-allocated time / full time
# Memory: peak RSS growth from the smallest to the largest volume under
# the queue's worth of chunks (rbd_migration_queue_depth x chunk size).

# Kept from the earlier bench, about the default method and the generic
# copy (one OSD).
SAME_POOL_MAX = 0.2      # seconds
SAME_POOL_FLAT = 0.05    # seconds more at the largest size than the least
GENERIC_FULL = 1.5       # generic RBD<->file vs Cinder, full volume
GENERIC_10 = 5.0         # the same, 10%-allocated volume
THIN = 1.1               # destination allocated / data reference
CPU_SHARE = 0.5          # default method's CPU per GiB / Cinder's
PROGRESS_COST = 0.02     # progress on / off - 1


def _mib(n):
    return '%d MiB' % (n // units.Mi)


class _Checks:
    def __init__(self, data, rows):
        self.rows = {(r['cluster'], r['size'], r['fill'], r['case']): r
                     for r in rows}
        self.config = data['config']
        self.default = 'rbdmig ' + self.config['default_method']
        self.lines = []
        self.group = ISSUE

    def get(self, cluster, size, fill, case):
        row = self.rows.get((cluster, size, fill, case))
        return row if row and 'seconds' in row else None

    def add(self, name, measured, rule, passed):
        result = 'N/A' if passed is None else ('PASS' if passed else 'FAIL')
        self.lines.append({'target': name, 'measured': measured,
                           'rule': rule, 'result': result,
                           'group': self.group})

    def missing(self, name, rule):
        self.add(name, 'case failed or missing', rule, False)

    def fastest_ceph(self, cluster, size, fill):
        """``(seconds, tool)`` of the fastest of Ceph's whole moves."""
        found = [(row['seconds'], tool) for row, tool in (
            (self.get(cluster, size, fill, t), t) for t in report.CEPH_TOOLS)
            if row]
        return min(found) if found else (None, None)

    def vs_ceph(self, name, cluster, size, fill, case, limit):
        """Add the fastest Ceph move's time over ``case``'s."""
        seconds, tool = self.fastest_ceph(cluster, size, fill)
        self.ratio(name, '>= %.2fx' % limit, seconds,
                   _seconds(self.get(cluster, size, fill, case)), limit,
                   note=' (%s)' % tool if tool else '')

    def ratio(self, name, rule, num, den, limit, above=True, note=''):
        """Add ``num/den`` (seconds or so) against ``limit``."""
        if num is None or den is None:
            return self.missing(name, rule)
        value = num / den
        self.add(name, '%.3f%s' % (value, note), rule,
                 value >= limit if above else value <= limit)


def _seconds(row):
    return row and row['seconds']


def _clusters(data, link=False):
    """``(desc, name, osds, sizes)`` of each cluster the run had.

    :param link: the cases behind the thin link (recorded as a cluster
        of their own) instead of the others.
    """
    found = data['config'].get('clusters') or [
        {'name': report.ONE_OSD, 'osds': 1,
         'sizes': data['config']['sizes']}]
    return [(dict(c, fills=c.get('fills', data['config']['fills'])),
             c['name'], c['osds'], sorted(c['sizes'])) for c in found
            if bool(c.get('link_mbit')) == link]


def compute(data, rows):
    """Return the target lines: target, measured, rule, PASS/FAIL/N/A,
    and their group (:data:`ISSUE`'s table first, then the earlier)."""
    c = _Checks(data, rows)
    for desc, cluster, _, sizes in _clusters(data):
        for size in sizes:
            _issue_volume(c, cluster, size, desc['fills'])
        _growth(c, cluster, sizes, c.default)
        if desc.get('thin'):
            _thin(c, cluster, desc['thin'])
    for desc, cluster, _, sizes in _clusters(data, link=True):
        for size in sizes:
            c.vs_ceph('%s full vs fastest Ceph move, %s, %s' % (
                c.default, cluster, _mib(size)), cluster, size, 'full',
                c.default, LINK_VS_CEPH)
    c.group = FLEET
    _drain(c, data.get('drain', []))
    c.group = EARLIER
    for desc, cluster, osds, sizes in _clusters(data):
        for size in sizes:
            for fill in desc['fills']:
                _offload(c, cluster, osds, size, fill)
            if '10%' in desc['fills']:
                _sparse(c, cluster, size, OFFLOAD)
        _memory(c, cluster, sizes)
    for _, cluster, osds, sizes in _clusters(data):
        if osds == 1:
            _same_pool(c, cluster, sizes)
            for size in sizes:
                _default(c, cluster, size)
    return c.lines


def _drain(c, rows):
    """The drains run at ``rbdmig drain``'s default parallelism."""
    from rbdmig.cmd import migrations

    rule = '<= %.2f s' % DRAIN_PER_VOLUME
    for row in rows:
        if row['parallel'] != migrations.DRAIN_PARALLEL_OFFLOAD:
            continue
        name = ('drain %d x 1 GiB thin, %s, parallel %d (the default): '
                'wall time per volume' % (row['volumes'],
                                          row.get('method', 'offload'),
                                          row['parallel']))
        if not row.get('ok'):
            c.missing(name, rule)
        else:
            c.add(name, '%.3f s' % row['per_volume'], rule,
                  row['per_volume'] <= DRAIN_PER_VOLUME)


def _issue_volume(c, cluster, size, fills):
    """The default method on one size's volumes: time, bound, CPU."""
    tag = ', %s, %s' % (cluster, _mib(size))
    c.vs_ceph('%s full vs fastest Ceph move%s' % (c.default, tag), cluster,
              size, 'full', c.default, DEFAULT_VS_CEPH)
    full = c.get(cluster, size, 'full', c.default)
    bound = full and full.get('bound')
    c.ratio('%s full vs copy bound%s' % (c.default, tag),
            '>= %.2fx' % DEFAULT_VS_BOUND,
            full and bound and size / full['seconds'], bound,
            DEFAULT_VS_BOUND)
    if '10%' in fills:
        c.vs_ceph('%s 10%% vs fastest Ceph move%s' % (c.default, tag),
                  cluster, size, '10%', c.default, SPARSE_VS_CEPH)
    deep = c.get(cluster, size, 'full', cases.RBD_DEEP_CP)
    c.ratio('%s full host CPU/GiB vs rbd deep cp%s' % (c.default, tag),
            '<= %.2fx' % DEFAULT_CPU_VS_DEEP_CP, full and full['cpu'],
            deep and deep['cpu'], DEFAULT_CPU_VS_DEEP_CP, above=False)


def _thin(c, cluster, thin):
    """The big thin volume: against Ceph, and against the full volume
    holding as much data (its cost must follow the data, not the size)."""
    size, data, fill = thin['size'], thin['data'], thin['fill']
    tag = ', %s, %s with %s' % (cluster, _mib(size), fill)
    for case in dict.fromkeys((c.default, OFFLOAD)):
        c.vs_ceph('%s vs fastest Ceph move%s' % (case, tag), cluster, size,
                  fill, case, THIN_VS_CEPH)
        c.ratio('%s time / full %s%s' % (case, _mib(data), tag),
                '<= %.2f' % THIN_VS_FULL,
                _seconds(c.get(cluster, size, fill, case)),
                _seconds(c.get(cluster, data, 'full', case)), THIN_VS_FULL,
                above=False)


def _growth(c, cluster, sizes, case):
    """Peak RSS of ``case``'s full moves, smallest to largest size."""
    rule = '< %s' % _mib(RSS_GROWTH)
    title = 'peak RSS growth, %s, %s, %s -> %s' % (
        case, cluster, _mib(sizes[0]), _mib(sizes[-1]))
    if len(sizes) < 2:
        return c.add(title, 'one size only', rule, None)
    small = c.get(cluster, sizes[0], 'full', case)
    large = c.get(cluster, sizes[-1], 'full', case)
    if not small or not large:
        return c.missing(title, rule)
    growth = large['peak_rss'] - small['peak_rss']
    c.add(title, '%+.0f MiB' % (growth / units.Mi), rule,
          growth < RSS_GROWTH)


def _offload(c, cluster, osds, size, fill):
    tag = ', %s, %s, %s' % (cluster, _mib(size), fill)
    mine = c.get(cluster, size, fill, OFFLOAD)
    limit = OFFLOAD_VS_CEPH if osds == 1 else OFFLOAD_VS_CEPH_MULTI
    c.vs_ceph('offload vs fastest Ceph move' + tag, cluster, size, fill,
              OFFLOAD, limit)
    deep = c.get(cluster, size, fill, cases.RBD_DEEP_CP)
    note = ''
    if mine and deep and deep['osd_cpu']:
        note = '; OSDs %.2fx' % (mine['osd_cpu'] / deep['osd_cpu'])
    c.ratio('offload host CPU/GiB vs rbd deep cp' + tag,
            '<= %.2fx' % CPU_VS_DEEP_CP, mine and mine['cpu'],
            deep and deep['cpu'], CPU_VS_DEEP_CP, above=False, note=note)


def _sparse(c, cluster, size, case):
    """10%-allocated time <= 0.2x full, destination exactly as thin."""
    name = '%s 10%% time / full, as thin, %s, %s' % (case, cluster,
                                                     _mib(size))
    rule = '<= %.2f, dst = src' % SPARSE_SHARE
    full = c.get(cluster, size, 'full', case)
    tenth = c.get(cluster, size, '10%', case)
    if not full or not tenth:
        return c.missing(name, rule)
    share = tenth['seconds'] / full['seconds']
    thin = all(r['dst_allocated'] == r['src_allocated']
               for r in (full, tenth))
    c.add(name, '%.3f; dst %s of src %s' % (
        share, _mib(tenth['dst_allocated']), _mib(tenth['src_allocated'])),
        rule, share <= SPARSE_SHARE and thin)


def _memory(c, cluster, sizes):
    """Peak RSS independent of volume size: growth under the queue."""
    queue = c.config.get('queue_depth', 16) * c.config.get(
        'chunk_size', 4 * units.Mi)
    rule = '< %s (queue depth x chunk)' % _mib(queue)
    name = 'peak RSS growth, %s, %s -> %s' % (
        cluster, _mib(sizes[0]), _mib(sizes[-1]))
    if len(sizes) < 2:
        c.add(name + ', rbdmig cases', 'one size only', rule, None)
        return
    growth = {}
    for case in {k[3] for k in c.rows if k[0] == cluster}:
        small = c.get(cluster, sizes[0], 'full', case)
        large = c.get(cluster, sizes[-1], 'full', case)
        if case.startswith('rbdmig') and small and large:
            growth[case] = large['peak_rss'] - small['peak_rss']
    if OFFLOAD in growth:
        c.add(name + ', offload', '%+.0f MiB' % (growth[OFFLOAD] / units.Mi),
              rule, growth[OFFLOAD] < queue)
    else:
        c.missing(name + ', offload', rule)
    if not growth:
        return c.missing(name + ', every rbdmig case', rule)
    worst = max(growth, key=growth.get)
    c.add(name + ', every rbdmig case', '%+.0f MiB (%s)' % (
        growth[worst] / units.Mi, worst), rule, growth[worst] < queue)


def _same_pool(c, cluster, sizes):
    for size in sizes:
        name = 'same pool < 0.2 s, %s, %s' % (cluster, _mib(size))
        times = [_seconds(c.get(cluster, size, f, report.SAME_POOL))
                 for f in c.config['fills']]
        if None in times:
            c.missing(name, '< 0.2 s')
        else:
            c.add(name, 'max %.3f s' % max(times),
                  '< %.1f s' % SAME_POOL_MAX, max(times) < SAME_POOL_MAX)
    if len(sizes) < 2:
        return
    first = _seconds(c.get(cluster, sizes[0], 'full', report.SAME_POOL))
    last = _seconds(c.get(cluster, sizes[-1], 'full', report.SAME_POOL))
    name = 'same pool flat, %s, %s -> %s' % (cluster, _mib(sizes[0]),
                                             _mib(sizes[-1]))
    rule = '+< %.2f s' % SAME_POOL_FLAT
    if first is None or last is None:
        c.missing(name, rule)
    else:
        c.add(name, '%+.3f s' % (last - first), rule,
              last - first < SAME_POOL_FLAT)


def _default(c, cluster, size):
    """The earlier bench's targets, about the default method and copies."""
    tag = ', %s, %s' % (cluster, _mib(size))
    full = c.get(cluster, size, 'full', c.default)
    if c.default != OFFLOAD:  # offload's is among the earlier ones
        _sparse(c, cluster, size, c.default)
    for fill, limit in (('full', GENERIC_FULL), ('10%', GENERIC_10)):
        cinder = _seconds(c.get(cluster, size, fill, report.CINDER))
        for case in (report.TO_FILE, report.FROM_FILE):
            row = c.get(cluster, size, fill, case)
            c.ratio('%s %s vs Cinder%s' % (case, fill, tag),
                    '>= %.1fx' % limit, cinder, _seconds(row), limit)
            if fill == '10%':
                c.ratio('%s %s allocated / data%s' % (case, fill, tag),
                        '<= %.1f' % THIN, row and row['dst_allocated'],
                        row and row['dst_reference'], THIN, above=False)
    cinder = c.get(cluster, size, 'full', report.CINDER)
    c.ratio('%s full CPU/GiB vs Cinder%s' % (c.default, tag),
            '<= %.1fx' % CPU_SHARE, full and full['cpu'],
            cinder and cinder['cpu'], CPU_SHARE, above=False)
    for base in (c.default, report.TO_FILE):
        off = _seconds(c.get(cluster, size, 'full', base))
        on = _seconds(c.get(cluster, size, 'full', base + ' +progress'))
        name = '%s full progress on/off%s' % (base, tag)
        rule = '< %.2f' % (1 + PROGRESS_COST)
        if off is None or on is None:
            c.missing(name, rule)
        else:
            c.add(name, '%.3f' % (on / off), rule,
                  on / off < 1 + PROGRESS_COST)
