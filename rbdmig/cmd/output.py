"""What the CLI prints: tables, JSON, and a progress bar or lines."""

import json
import sys
import time

from oslo_utils import units


def dumps(value):
    """JSON for scripts: sorted keys, dates as ISO strings."""
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def table(rows, columns, out=None):
    """Print ``rows`` (dicts) as aligned columns, ``columns`` in order."""
    out = out or sys.stdout
    cells = [[str('' if row.get(c) is None else row.get(c))
              for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells])
              for i, c in enumerate(columns)]
    out.write('  '.join(c.ljust(w) for c, w in zip(columns, widths))
              .rstrip() + '\n')
    for row in cells:
        out.write('  '.join(v.ljust(w) for v, w in zip(row, widths))
                  .rstrip() + '\n')


def size(nbytes):
    return '%.1f MiB' % (nbytes / units.Mi) if nbytes is not None else '-'


def describe(progress):
    """``42.0% (430 MiB of 1024 MiB, 120.3 MiB/s, 5 s left)``."""
    if not progress or progress.get('percent') is None:
        return 'no progress yet'
    rate = progress.get('rate')
    eta = progress.get('eta')
    if progress['percent'] >= 100:
        left = 'done'
    elif eta is not None:
        left = '%.0f s left' % eta
    else:
        left = 'time left unknown'
    return '%.1f%% (%s of %s, %s, %s)' % (
        progress['percent'], size(progress.get('bytes_done')),
        size(progress.get('bytes_total')),
        '%.1f MiB/s' % (rate / units.Mi) if rate else 'rate unknown', left)


class ProgressView(object):
    """Shows a migration's progress as it goes: a bar on a terminal,
    one plain line every ``interval`` seconds otherwise."""

    WIDTH = 30

    def __init__(self, out=None, interval=5.0, clock=time.monotonic):
        self.out = out or sys.stdout
        self.interval, self.clock = interval, clock
        self.tty = hasattr(self.out, 'isatty') and self.out.isatty()
        self._last = None

    def show(self, progress, force=False):
        """Show ``progress`` (a dict as ``rbdmig show`` has it)."""
        now = self.clock()
        if self.tty:
            done = int(self.WIDTH * (progress.get('percent') or 0) / 100)
            bar = '[%s%s] %s' % ('#' * done, '.' * (self.WIDTH - done),
                                 describe(progress))
            # Padded: a shorter line overwrites all of a longer one.
            self.out.write('\r' + bar.ljust(79))
            self.out.flush()
        elif force or self._last is None or (
                now - self._last >= self.interval):
            self.out.write(describe(progress) + '\n')
            self.out.flush()
            self._last = now

    def end(self, line):
        if self.tty:
            self.out.write('\n')
        self.out.write(line + '\n')
        self.out.flush()
