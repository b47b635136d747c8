"""The targets, each PASS/FAIL from the numbers of the same run."""

from oslo_utils import units

from rbdmig.bench import cases
from rbdmig.bench import report

# The targets ("Performance: server-side copy").
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
VS_CEPH = 1.0            # default method vs the fastest Ceph tool
VS_BOUND = 0.9           # default method vs the copy bound
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

    def get(self, cluster, size, fill, case):
        row = self.rows.get((cluster, size, fill, case))
        return row if row and 'seconds' in row else None

    def add(self, name, measured, rule, passed):
        result = 'N/A' if passed is None else ('PASS' if passed else 'FAIL')
        self.lines.append({'target': name, 'measured': measured,
                           'rule': rule, 'result': result})

    def missing(self, name, rule):
        self.add(name, 'case failed or missing', rule, False)

    def ratio(self, name, rule, num, den, limit, above=True, note=''):
        """Add ``num/den`` (seconds or so) against ``limit``."""
        if num is None or den is None:
            return self.missing(name, rule)
        value = num / den
        self.add(name, '%.3f%s' % (value, note), rule,
                 value >= limit if above else value <= limit)


def _seconds(row):
    return row and row['seconds']


def _clusters(data):
    """``(name, osds, sizes)`` of each cluster the run had."""
    found = data['config'].get('clusters') or [
        {'name': report.ONE_OSD, 'osds': 1,
         'sizes': data['config']['sizes']}]
    return [(c['name'], c['osds'], sorted(c['sizes'])) for c in found]


def compute(data, rows):
    """Return the target lines: target, measured, rule, PASS/FAIL/N/A."""
    c = _Checks(data, rows)
    for cluster, osds, sizes in _clusters(data):
        for size in sizes:
            for fill in ('full', '10%'):
                _offload(c, cluster, osds, size, fill)
            _sparse(c, cluster, size, OFFLOAD)
        _memory(c, cluster, sizes)
    for cluster, osds, sizes in _clusters(data):
        if osds == 1:
            _same_pool(c, cluster, sizes)
            for size in sizes:
                _default(c, cluster, size)
    return c.lines


def _offload(c, cluster, osds, size, fill):
    tag = ', %s, %s, %s' % (cluster, _mib(size), fill)
    mine = c.get(cluster, size, fill, OFFLOAD)
    tools = [(c.get(cluster, size, fill, t), t) for t in report.CEPH_TOOLS]
    tools = [(row['seconds'], t) for row, t in tools if row]
    limit = OFFLOAD_VS_CEPH if osds == 1 else OFFLOAD_VS_CEPH_MULTI
    fastest = min(tools) if tools else (None, None)
    c.ratio('offload vs fastest Ceph move' + tag, '>= %.2fx' % limit,
            fastest[0], _seconds(mine), limit,
            note=' (%s)' % fastest[1] if fastest[1] else '')
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
    tools = [c.get(cluster, size, 'full', t) for t in report.CEPH_TOOLS]
    tools = [t['seconds'] for t in tools if t]
    c.ratio('%s full vs fastest Ceph move%s' % (c.default, tag),
            '>= %.1fx' % VS_CEPH, min(tools) if tools else None,
            _seconds(full), VS_CEPH)
    bound = full and full.get('bound')
    c.ratio('%s full vs copy bound%s' % (c.default, tag),
            '>= %.1fx' % VS_BOUND,
            full and bound and size / full['seconds'], bound, VS_BOUND)
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
