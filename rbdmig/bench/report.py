"""The bench's numbers: per-case medians, ratios, and the tables."""

import statistics

from oslo_utils import units

from rbdmig.bench import cases
from rbdmig.bench import plan

CEPH_TOOLS = (cases.RBD_CP, cases.RBD_DEEP_CP, cases.RBD_MIGRATION)
CINDER = plan.CINDER
TO_FILE = 'rbdmig generic RBD->file'
FROM_FILE = 'rbdmig generic file->RBD'
SAME_POOL = 'rbdmig same pool'
ONE_OSD = '1 OSD'  # rows of runs made before clusters had names

COLUMNS = (
    ('case', 'case'), ('s', 'wall s'), ('rate', 'MiB/s'),
    ('cpu', 'host CPU s/GiB'), ('osd', 'OSD CPU s/GiB'),
    ('rss', 'RSS MiB'), ('src', 'src MiB'), ('dst', 'dst MiB'),
    ('sha', 'sha256'), ('verify', 'verify cost'), ('x_bound', 'x bound'),
    ('x_ceph', 'x Ceph'), ('x_cinder', 'x Cinder'))
_MEDIANS = ('seconds', 'cpu_user', 'cpu_sys', 'osd_cpu', 'src_allocated',
            'dst_allocated', 'dst_reference')


def cluster_of(row):
    """The cluster a run, volume or ceiling row was measured on."""
    return row.get('cluster', ONE_OSD)


def ceiling(data):
    """``{(cluster, size, backend): {'read': B/s, 'write': B/s}}`` medians."""
    found = {}
    for row in data.get('ceiling', []):
        if row.get('ok'):
            entry = found.setdefault(
                (cluster_of(row), row['size'], row['backend']),
                {'read': [], 'write': []})
            entry['read'].append(row['read'])
            entry['write'].append(row['write'])
    return {k: {io: statistics.median(v[io]) for io in v}
            for k, v in found.items()}


def copy_bound(ceil, cluster, size, src, dst):
    """The single-client copy bound 1/(1/R + 1/W), or None."""
    read, write = ceil.get((cluster, size, src)), ceil.get((cluster, size,
                                                            dst))
    if not read or not write:
        return None
    return 1 / (1 / read['read'] + 1 / write['write'])


def summarize(data):
    """Return one dict per (cluster, size, fill, case): medians of runs.

    Peak RSS is the largest of the runs; the rest are medians.  ``cpu``
    is user + system of the process that did the work, ``osd_cpu`` what
    the sandbox's OSDs used meanwhile.
    """
    groups = {}
    for run in data.get('runs', []):
        groups.setdefault((cluster_of(run), run['size'], run['fill'],
                           run['case']), []).append(run)
    ceil = ceiling(data)
    rows = []
    for (cluster, size, fill, case), runs in groups.items():
        good = [r for r in runs if r.get('ok')]
        first = runs[0]
        row = {'cluster': cluster, 'size': size, 'fill': fill, 'case': case,
               'method': first.get('method'), 'verify': first.get('verify'),
               'progress': first.get('progress', False),
               'runs': len(runs), 'failed': len(runs) - len(good),
               'errors': [r['error'] for r in runs if not r.get('ok')]}
        if good:
            row.update({k: statistics.median(r.get(k) or 0 for r in good)
                        for k in _MEDIANS},
                       peak_rss=max(r['peak_rss'] for r in good),
                       checksum_ok=all(r['checksum_ok'] for r in good))
            row['cpu'] = statistics.median(r['cpu_user'] + r['cpu_sys']
                                           for r in good)
            row['osd_cpu'] = statistics.median(r.get('osd_cpu', 0)
                                               for r in good)
            if first['route'] in ('copy', 'move'):
                row['bound'] = copy_bound(ceil, cluster, size, first['src'],
                                          first['dst'])
        rows.append(row)
    _ratios(rows)
    return rows


def _ratios(rows):
    by_key = {(r['cluster'], r['size'], r['fill'], r['case']): r
              for r in rows}
    # Each method's move without verification, for the verify cost.
    unverified = {(r['cluster'], r['size'], r['fill'], r['method']): r
                  for r in rows if r.get('verify') == 'none'
                  and not r['progress'] and 'seconds' in r}
    for row in rows:
        if 'seconds' not in row:
            continue
        none = unverified.get((row['cluster'], row['size'], row['fill'],
                               row['method']))
        if none and row['method'] and not row['progress']:
            row['verify_cost'] = row['seconds'] - none['seconds']
        key = (row['cluster'], row['size'], row['fill'])
        tools = [by_key.get(key + (t,)) for t in CEPH_TOOLS]
        tools = [t['seconds'] for t in tools if t and 'seconds' in t]
        cinder = by_key.get(key + (CINDER,), {}).get('seconds')
        row['x_ceph'] = min(tools) / row['seconds'] if tools else None
        row['x_cinder'] = cinder / row['seconds'] if cinder else None
        bound = row.get('bound')
        row['x_bound'] = (row['size'] / row['seconds'] / bound
                          if bound else None)


def fmt(value, spec):
    """``format(value, spec)``, or ``-`` for None."""
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
        'rate': '%.0f' % (row['size'] / units.Mi / sec),
        'cpu': '%.2f' % (row['cpu'] / gib),
        'osd': '%.2f' % (row['osd_cpu'] / gib),
        'rss': '%.0f' % (row['peak_rss'] / units.Mi),
        'src': '%.0f' % (row['src_allocated'] / units.Mi),
        'dst': '%.0f' % (row['dst_allocated'] / units.Mi),
        'sha': 'ok' if row['checksum_ok'] else 'DIFFERS',
        'verify': fmt(row.get('verify_cost'), '+.3f'),
        'x_bound': fmt(row.get('x_bound'), '.2f'),
        'x_ceph': fmt(row.get('x_ceph'), '.2f'),
        'x_cinder': fmt(row.get('x_cinder'), '.2f'),
    }


def table(headers, lines):
    """An RST simple table (also readable as plain text)."""
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *lines)]
    rule = '  '.join('=' * w for w in widths)
    form = '  '.join('%%-%ds' % w for w in widths)
    out = [rule, (form % tuple(headers)).rstrip(), rule]
    out += [(form % tuple(line)).rstrip() for line in lines]
    return '\n'.join(out + [rule])


def _cases(data, cluster):
    for desc in data['config'].get('clusters', []):
        if desc['name'] == cluster:
            return desc['cases']
    return data['config'].get('cases', [])


def volume_tables(data, rows):
    """Yield ``(title, table)`` per volume, cases in plan order."""
    ceil = ceiling(data)
    for vol in data.get('volumes', []):
        cluster = cluster_of(vol)
        order = {c: i for i, c in enumerate(_cases(data, cluster))}
        mine = sorted((r for r in rows if r['cluster'] == cluster
                       and r['size'] == vol['size']
                       and r['fill'] == vol['fill']),
                      key=lambda r: order.get(r['case'], 99))
        keys = [k for k, _ in COLUMNS]
        lines = [[cells(r).get(k, '') for k in keys] for r in mine]
        bound = copy_bound(ceil, cluster, vol['size'], 'ceph-a', 'ceph-b')
        fill = vol['fill']
        title = ('%s: %d MiB volume, %s (%d MiB in %d extents, '
                 'sha256 %s...); copy bound %s MiB/s' % (
                     cluster, vol['size'] // units.Mi,
                     fill + ' allocated' if fill in ('full', '10%')
                     else 'holding ' + fill,
                     vol['allocated'] // units.Mi,
                     vol.get('rbd_extents', 0), vol['sha256'][:12],
                     fmt(bound and bound / units.Mi, '.0f')))
        text = table([h for _, h in COLUMNS], lines)
        failures = ['* %s: %s' % (r['case'], ' '.join(
            r['errors'][-1].split())[:300]) for r in mine if r['errors']]
        if failures:
            text += '\n\nFailures:\n\n' + '\n'.join(failures)
        yield title, text


def verify_table(data, rows):
    """``migration_verify``'s cost: each level's time, and % over none."""
    levels = ('none', 'extents', 'osd_checksum', 'checksum')
    lines = []
    for row in rows:
        if row['verify'] != 'none' or row['progress'] or not row['method']:
            continue
        same = {r['verify']: r for r in rows
                if (r['cluster'], r['size'], r['fill'], r['method'])
                == (row['cluster'], row['size'], row['fill'], row['method'])
                and not r['progress'] and 'seconds' in r}
        if 'none' not in same:
            continue
        base = same['none']['seconds']
        line = [row['cluster'], '%d MiB' % (row['size'] // units.Mi),
                row['fill'], row['method']]
        for level in levels:
            found = same.get(level)
            line.append('-' if not found else '%.3f (%+.0f %%)' % (
                found['seconds'], (found['seconds'] / base - 1) * 100))
        lines.append(line)
    return table(['cluster', 'size', 'fill', 'method'] + list(levels),
                 sorted(lines)) if lines else ''


def ceiling_table(data):
    """``rbd bench`` medians per cluster, size and pool."""
    lines = []
    for (cluster, size, backend), v in sorted(ceiling(data).items()):
        lines.append([cluster, str(size // units.Mi), backend,
                      '%.0f' % (v['write'] / units.Mi),
                      '%.0f' % (v['read'] / units.Mi)])
    for row in (r for r in data.get('ceiling', []) if not r.get('ok')):
        lines.append([cluster_of(row), str(row['size'] // units.Mi),
                      row['backend'], 'FAILED',
                      row['error'].splitlines()[-1][:60]])
    return table(['cluster', 'MiB', 'pool', 'seq write MiB/s',
                  'seq read MiB/s'], lines)
