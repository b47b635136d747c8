"""The issue's targets, each PASS/FAIL from the numbers of the same run."""

from oslo_utils import units

from rbdmig.bench import report

SAME_POOL_MAX = 0.2      # seconds
SAME_POOL_FLAT = 0.05    # seconds more at the largest size than the least
VS_CEPH = 1.0            # default method vs the fastest Ceph tool
VS_BOUND = 0.9           # default method vs the copy bound
SPARSE_SHARE = 0.03      # 1%-allocated time / full time
GENERIC_FULL = 1.5       # generic RBD<->file vs Cinder, full volume
GENERIC_10 = 5.0         # the same, 10%-allocated volume
THIN = 1.1               # destination allocated / source allocated
CPU_SHARE = 0.5          # assisted CPU per GiB / Cinder's
RSS_GROWTH = 100 * units.Mi
PROGRESS_COST = 0.02     # progress on / off - 1


def _mib(n):
    return '%d MiB' % (n // units.Mi)


class _Checks:
    def __init__(self, data, rows):
        self.rows = {(r['size'], r['fill'], r['case']): r for r in rows}
        self.sizes = sorted(data['config']['sizes'])
        self.default = 'rbdmig ' + data['config']['default_method']
        self.lines = []

    def get(self, size, fill, case):
        row = self.rows.get((size, fill, case))
        return row if row and 'seconds' in row else None

    def add(self, name, measured, rule, passed):
        result = 'N/A' if passed is None else ('PASS' if passed else 'FAIL')
        self.lines.append({'target': name, 'measured': measured,
                           'rule': rule, 'result': result})

    def missing(self, name, rule):
        self.add(name, 'case failed or missing', rule, False)

    def ratio(self, name, rule, num, den, limit, above=True):
        """Add ``num/den`` (seconds or so) against ``limit``."""
        if num is None or den is None:
            return self.missing(name, rule)
        value = num / den
        self.add(name, '%.3f' % value, rule,
                 value >= limit if above else value <= limit)


def _seconds(row):
    return row and row['seconds']


def compute(data, rows):
    """Return the target lines: target, measured, rule, PASS/FAIL/N/A."""
    c = _Checks(data, rows)
    for size in c.sizes:
        times = [_seconds(c.get(size, f, report.SAME_POOL))
                 for f in data['config']['fills']]
        if None in times:
            c.missing('same pool < 0.2 s, %s' % _mib(size), '< 0.2 s')
        else:
            c.add('same pool < 0.2 s, %s' % _mib(size),
                  'max %.3f s' % max(times), '< %.1f s' % SAME_POOL_MAX,
                  max(times) < SAME_POOL_MAX)
    if len(c.sizes) > 1:
        first = _seconds(c.get(c.sizes[0], 'full', report.SAME_POOL))
        last = _seconds(c.get(c.sizes[-1], 'full', report.SAME_POOL))
        name = 'same pool flat, %s -> %s' % (_mib(c.sizes[0]),
                                             _mib(c.sizes[-1]))
        rule = '+< %.2f s' % SAME_POOL_FLAT
        if first is None or last is None:
            c.missing(name, rule)
        else:
            c.add(name, '%+.3f s' % (last - first), rule,
                  last - first < SAME_POOL_FLAT)
    for size in c.sizes:
        _per_size(c, size)
    _rss(c, data)
    return c.lines


def _per_size(c, size):
    tag = ', %s' % _mib(size)
    full = c.get(size, 'full', c.default)
    tools = [c.get(size, 'full', t) for t in report.CEPH_TOOLS]
    tools = [t['seconds'] for t in tools if t]
    c.ratio('%s full vs fastest Ceph tool%s' % (c.default, tag),
            '>= %.1fx' % VS_CEPH, min(tools) if tools else None,
            _seconds(full), VS_CEPH)
    bound = full and full.get('bound')
    c.ratio('%s full vs copy bound%s' % (c.default, tag),
            '>= %.1fx' % VS_BOUND,
            full and bound and size / full['seconds'], bound, VS_BOUND)
    c.ratio('%s 1%% allocated time / full%s' % (c.default, tag),
            '<= %.2f' % SPARSE_SHARE, _seconds(c.get(size, '1%', c.default)),
            _seconds(full), SPARSE_SHARE, above=False)
    for fill, limit in (('full', GENERIC_FULL), ('10%', GENERIC_10)):
        cinder = _seconds(c.get(size, fill, report.CINDER))
        for case in (report.TO_FILE, report.FROM_FILE):
            row = c.get(size, fill, case)
            c.ratio('%s %s vs Cinder%s' % (case, fill, tag),
                    '>= %.1fx' % limit, cinder, _seconds(row), limit)
            if fill == '10%':
                c.ratio('%s %s allocated / data%s' % (case, fill, tag),
                        '<= %.1f' % THIN, row and row['dst_allocated'],
                        row and row['dst_reference'], THIN, above=False)
    cinder = c.get(size, 'full', report.CINDER)
    c.ratio('%s full CPU/GiB vs Cinder%s' % (c.default, tag),
            '<= %.1fx' % CPU_SHARE,
            full and full['cpu_user'] + full['cpu_sys'],
            cinder and cinder['cpu_user'] + cinder['cpu_sys'], CPU_SHARE,
            above=False)
    for base in (c.default, report.TO_FILE):
        off = _seconds(c.get(size, 'full', base))
        on = _seconds(c.get(size, 'full', base + ' +progress'))
        name = '%s full progress on/off%s' % (base, tag)
        rule = '< %.2f' % (1 + PROGRESS_COST)
        if off is None or on is None:
            c.missing(name, rule)
        else:
            c.add(name, '%.3f' % (on / off), rule,
                  on / off < 1 + PROGRESS_COST)


def _rss(c, data):
    name = 'peak RSS growth, rbdmig cases, full volumes'
    rule = '< %d MiB' % (RSS_GROWTH // units.Mi)
    if len(c.sizes) < 2:
        c.add(name, 'one size only', rule, None)
        return
    worst = None
    for case in data['config']['cases']:
        if not case.startswith('rbdmig'):
            continue
        small = c.get(c.sizes[0], 'full', case)
        large = c.get(c.sizes[-1], 'full', case)
        if small and large:
            growth = large['peak_rss'] - small['peak_rss']
            if worst is None or growth > worst[0]:
                worst = (growth, case)
    if worst is None:
        c.missing(name, rule)
    else:
        c.add('%s, %s -> %s' % (name, _mib(c.sizes[0]), _mib(c.sizes[-1])),
              '%+.0f MiB (%s)' % (worst[0] / units.Mi, worst[1]), rule,
              worst[0] < RSS_GROWTH)
