"""The bench's chart: MiB/s per case, and where the CPU went."""

from oslo_utils import units

from rbdmig.bench import report


def _descs(data):
    return data['config'].get('clusters') or [
        {'name': report.ONE_OSD, 'sizes': data['config']['sizes'],
         'cases': data['config'].get('cases', [])}]


def _clusters(data):
    return [(c['name'], sorted(c['sizes']), c['cases'])
            for c in _descs(data) if not c.get('link_mbit')]


def _specials(data, by_key):
    """The panels of the thin link and of the big thin volume.

    Each is ``(title, cases, [(label, key of case)])``: wall seconds of
    the same cases side by side, behind the link and on the host, or on
    the big thin volume and on the full one holding as much data.
    """
    panels = []
    descs = _descs(data)
    for link in (d for d in descs if d.get('link_mbit')):
        size = min(link['sizes'])
        host = next((d['name'] for d in descs if d.get('osds') == link.get(
            'osds') and not d.get('link_mbit')), report.ONE_OSD)
        panels.append((
            '%s, full %d MiB volume' % (link['name'], size // units.Mi),
            link['cases'],
            [('behind the link', lambda c, n=link['name'], s=size:
              (n, s, 'full', c)),
             ('on the host', lambda c, n=host, s=size: (n, s, 'full', c))]))
    for desc in (d for d in descs if d.get('thin')):
        thin, name = desc['thin'], desc['name']
        cases = [c for c in desc['cases']
                 if (name, thin['size'], thin['fill'], c) in by_key]
        panels.append((
            '%s: %d GiB volume holding %s' % (
                name, thin['size'] // units.Gi, thin['fill']), cases,
            [('big thin volume', lambda c, n=name, t=thin:
              (n, t['size'], t['fill'], c)),
             ('full %d MiB' % (thin['data'] // units.Mi),
              lambda c, n=name, t=thin: (n, t['data'], 'full', c))]))
    return panels


def _seconds(ax, by_key, title, cases, series):
    height = 0.8 / len(series)
    for i, (label, key) in enumerate(series):
        ax.barh([n + i * height for n in range(len(cases))],
                [by_key.get(key(case), {}).get('seconds', 0)
                 for case in cases], height=height, label=label)
    ax.set_xscale('log')
    ax.set_title(title, fontsize='medium')
    ax.set_xlabel('wall seconds of the whole move (log)')
    ax.grid(axis='x', which='both', alpha=0.3)
    ax.set_yticks([n + height * (len(series) - 1) / 2
                   for n in range(len(cases))])
    ax.set_yticklabels(cases, fontsize='small')
    ax.invert_yaxis()
    ax.legend(fontsize='small', loc='lower right')


def _rates(ax, by_key, data, cluster, size, cases):
    fills = next((d['fills'] for d in _descs(data)
                  if d['name'] == cluster and 'fills' in d),
                 data['config']['fills'])
    height = 0.8 / len(fills)
    for i, fill in enumerate(fills):
        rates = []
        for case in cases:
            row = by_key.get((cluster, size, fill, case), {})
            rates.append(size / units.Mi / row['seconds']
                         if 'seconds' in row else 0)
        ax.barh([n + i * height for n in range(len(cases))], rates,
                height=height, label=fill + ' allocated')
    bound = report.copy_bound(report.ceiling(data), cluster, size,
                              'ceph-a', 'ceph-b')
    if bound:
        ax.axvline(bound / units.Mi, color='k', linestyle='--',
                   label='copy bound (rbd bench)')
    ax.set_xscale('log')
    ax.set_title('%s, %d MiB volumes' % (cluster, size // units.Mi),
                 fontsize='medium')
    ax.set_xlabel('MiB/s of provisioned size (log)')
    ax.grid(axis='x', which='both', alpha=0.3)
    ax.set_yticks([n + height * (len(fills) - 1) / 2
                   for n in range(len(cases))])
    ax.set_yticklabels(cases, fontsize='small')
    ax.invert_yaxis()


def _cpu(ax, by_key, cluster, size, cases):
    host, osd = [], []
    for case in cases:
        row = by_key.get((cluster, size, 'full', case), {})
        gib = size / units.Gi
        host.append(row['cpu'] / gib if 'cpu' in row else 0)
        osd.append(row['osd_cpu'] / gib if 'osd_cpu' in row else 0)
    ys = range(len(cases))
    ax.barh(ys, host, color='tab:red', label='host CPU (process)')
    ax.barh(ys, osd, left=host, color='tab:gray', label='OSD CPU')
    ax.set_title('%s, CPU s per GiB, full %d MiB' % (cluster,
                                                      size // units.Mi),
                 fontsize='medium')
    ax.set_xlabel('CPU seconds per GiB provisioned')
    ax.grid(axis='x', alpha=0.3)
    ax.set_yticks(list(ys))
    ax.set_yticklabels([])
    ax.invert_yaxis()


def draw(data, path):
    """Draw the chart into a PNG: a row of panels per cluster.

    Each row: MiB/s of every case per volume size (both fills), then the
    host and OSD CPU per GiB of the largest full volume.  A last row
    shows the thin link's and the big thin volume's cases, in seconds.

    :returns: False when matplotlib is missing (``pip install
        rbdmig[bench]``), else True.
    """
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use('Agg')
    from matplotlib import gridspec
    from matplotlib import pyplot
    from matplotlib import ticker

    by_key = {(r['cluster'], r['size'], r['fill'], r['case']): r
              for r in (data.get('summary') or report.summarize(data))}
    clusters = _clusters(data)
    specials = _specials(data, by_key)
    columns = max([len(sizes) + 1 for _, sizes, _ in clusters]
                  + [len(specials)])
    heights = [0.3 * len(cases) + 1.2 for _, _, cases in clusters]
    if specials:
        heights.append(0.3 * max(len(p[1]) for p in specials) + 1.2)
    fig = pyplot.figure(figsize=(5.2 * columns + 2, sum(heights) + 1.2))
    grid = gridspec.GridSpec(len(heights), columns, figure=fig,
                             height_ratios=heights)

    for n, (cluster, sizes, cases) in enumerate(clusters):
        for m, size in enumerate(sizes):
            ax = fig.add_subplot(grid[n, m])
            _rates(ax, by_key, data, cluster, size, cases)
            ax.xaxis.set_major_formatter(ticker.FormatStrFormatter('%g'))
            ax.xaxis.set_minor_formatter(ticker.NullFormatter())
            if m:
                ax.set_yticklabels([])
        _cpu(fig.add_subplot(grid[n, columns - 1]), by_key, cluster,
             sizes[-1], cases)
    for m, panel in enumerate(specials):
        ax = fig.add_subplot(grid[len(clusters), m])
        _seconds(ax, by_key, *panel)
        ax.xaxis.set_major_formatter(ticker.FormatStrFormatter('%g'))
        ax.xaxis.set_minor_formatter(ticker.NullFormatter())
    handles, labels = [], []
    for ax in (fig.axes[0], fig.axes[len(clusters[0][1])]):
        h, la = ax.get_legend_handles_labels()
        handles, labels = handles + h, labels + la
    fig.legend(handles, labels, loc='lower center', ncol=len(labels),
               fontsize='small')
    fig.suptitle('rbdmig bench, %s, %s, %d cores; medians of %d' % (
        data['config']['objectstore'], data['machine']['cpu'],
        data['machine']['cores'], data['config']['repeat']))
    fig.tight_layout(rect=(0, 0.03, 1, 0.98))
    fig.savefig(path, dpi=90)
    pyplot.close(fig)
    return True
