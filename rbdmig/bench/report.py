"""The bench's numbers: per-case summary, ratios, targets, table, chart."""

import statistics

from oslo_utils import units

from rbdmig.bench import cases

CEPH_TOOLS = (cases.RBD_CP, cases.RBD_DEEP_CP, cases.RBD_MIGRATION)
CINDER = 'cinder generic RBD->RBD'
TO_FILE = 'rbdmig generic RBD->file'
FROM_FILE = 'rbdmig generic file->RBD'
SAME_POOL = 'rbdmig same pool'

COLUMNS = (
    ('case', 'case'), ('s', 'wall s'), ('prov', 'MiB/s prov'),
    ('alloc', 'MiB/s alloc'), ('usr', 'usr s/GiB'), ('sys', 'sys s/GiB'),
    ('rss', 'RSS MiB'), ('dst', 'dst MiB'), ('sha', 'sha256'),
    ('x_bound', 'x bound'), ('x_ceph', 'x Ceph'), ('x_cinder', 'x Cinder'))


def ceiling(data):
    """Return ``{(size, backend): {'read': B/s, 'write': B/s}}`` medians."""
    found = {}
    for row in data.get('ceiling', []):
        if row.get('ok'):
            entry = found.setdefault((row['size'], row['backend']),
                                     {'read': [], 'write': []})
            entry['read'].append(row['read'])
            entry['write'].append(row['write'])
    return {k: {io: statistics.median(v[io]) for io in v}
            for k, v in found.items()}


def copy_bound(ceil, size, src, dst):
    """The single-client copy bound 1/(1/R + 1/W), or None."""
    read, write = ceil.get((size, src)), ceil.get((size, dst))
    if not read or not write:
        return None
    return 1 / (1 / read['read'] + 1 / write['write'])


def summarize(data):
    """Return one dict per (size, fill, case): medians over repetitions."""
    groups = {}
    for run in data.get('runs', []):
        groups.setdefault((run['size'], run['fill'], run['case']),
                          []).append(run)
    ceil = ceiling(data)
    rows = []
    for (size, fill, case), runs in groups.items():
        good = [r for r in runs if r.get('ok')]
        row = {'size': size, 'fill': fill, 'case': case, 'runs': len(runs),
               'failed': len(runs) - len(good),
               'errors': [r['error'] for r in runs if not r.get('ok')]}
        if good:
            med = {k: statistics.median(r[k] for r in good)
                   for k in ('seconds', 'cpu_user', 'cpu_sys',
                             'src_allocated', 'dst_allocated',
                             'dst_reference')}
            row.update(med, peak_rss=max(r['peak_rss'] for r in good),
                       checksum_ok=all(r['checksum_ok'] for r in good))
            if good[0]['route'] in ('copy', 'move'):
                row['bound'] = copy_bound(ceil, size, good[0]['src'],
                                          good[0]['dst'])
        rows.append(row)
    by_key = {(r['size'], r['fill'], r['case']): r for r in rows}
    for row in rows:
        if 'seconds' not in row:
            continue
        key = (row['size'], row['fill'])
        tools = [by_key.get(key + (t,)) for t in CEPH_TOOLS]
        tools = [t['seconds'] for t in tools if t and 'seconds' in t]
        cinder = by_key.get(key + (CINDER,), {}).get('seconds')
        row['x_ceph'] = min(tools) / row['seconds'] if tools else None
        row['x_cinder'] = cinder / row['seconds'] if cinder else None
        bound = row.get('bound')
        row['x_bound'] = (row['size'] / row['seconds'] / bound
                          if bound else None)
    return rows


def _fmt(value, spec):
    return '-' if value is None else format(value, spec)


def cells(row):
    """The table cells of one summary row, keyed as in COLUMNS."""
    if 'seconds' not in row:
        return dict({k: '-' for k, _ in COLUMNS}, case=row['case'],
                    s='FAILED')
    gib = row['size'] / units.Gi
    sec = row['seconds']
    failed = ' (%d/%d failed)' % (row['failed'], row['runs'])
    return {
        'case': row['case'] + (failed if row['failed'] else ''),
        's': '%.3f' % sec,
        'prov': '%.0f' % (row['size'] / units.Mi / sec),
        'alloc': '%.0f' % (row['src_allocated'] / units.Mi / sec),
        'usr': '%.2f' % (row['cpu_user'] / gib),
        'sys': '%.2f' % (row['cpu_sys'] / gib),
        'rss': '%.0f' % (row['peak_rss'] / units.Mi),
        'dst': '%.0f' % (row['dst_allocated'] / units.Mi),
        'sha': 'ok' if row['checksum_ok'] else 'DIFFERS',
        'x_bound': _fmt(row.get('x_bound'), '.2f'),
        'x_ceph': _fmt(row.get('x_ceph'), '.2f'),
        'x_cinder': _fmt(row.get('x_cinder'), '.2f'),
    }


def table(headers, lines):
    """An RST simple table (also readable as plain text)."""
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *lines)]
    rule = '  '.join('=' * w for w in widths)
    fmt = '  '.join('%%-%ds' % w for w in widths)
    out = [rule, (fmt % tuple(headers)).rstrip(), rule]
    out += [(fmt % tuple(line)).rstrip() for line in lines]
    return '\n'.join(out + [rule])


def volume_tables(data, rows):
    """Yield ``(title, table)`` for each volume, cases in run order."""
    order = {c: i for i, c in enumerate(data['config']['cases'])}
    ceil = ceiling(data)
    for vol in data.get('volumes', []):
        mine = sorted((r for r in rows if r['size'] == vol['size']
                       and r['fill'] == vol['fill']),
                      key=lambda r: order.get(r['case'], 99))
        keys = [k for k, _ in COLUMNS]
        lines = [[cells(r).get(k, '') for k in keys] for r in mine]
        bound = copy_bound(ceil, vol['size'], 'ceph-a', 'ceph-b')
        title = ('%d MiB volume, %s allocated (%d MiB allocated, sha256 '
                 '%s...); copy bound %s MiB/s' % (
                     vol['size'] // units.Mi, vol['fill'],
                     vol['allocated'] // units.Mi, vol['sha256'][:12],
                     _fmt(bound and bound / units.Mi, '.0f')))
        text = table([h for _, h in COLUMNS], lines)
        failures = ['* %s: %s' % (r['case'], ' '.join(
            r['errors'][-1].split())[:300]) for r in mine if r['errors']]
        if failures:
            text += '\n\nFailures:\n\n' + '\n'.join(failures)
        yield title, text


def ceiling_table(data):
    lines = []
    for (size, backend), v in sorted(ceiling(data).items()):
        lines.append([str(size // units.Mi), backend,
                      '%.0f' % (v['write'] / units.Mi),
                      '%.0f' % (v['read'] / units.Mi)])
    failed = [r for r in data.get('ceiling', []) if not r.get('ok')]
    for row in failed:
        lines.append([str(row['size'] // units.Mi), row['backend'],
                      'FAILED', row['error'].splitlines()[-1][:60]])
    return table(['MiB', 'pool', 'seq write MiB/s', 'seq read MiB/s'],
                 lines)
