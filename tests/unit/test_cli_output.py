"""What the CLI prints while it waits: a bar on a terminal, lines else."""

import io

from rbdmig.cmd import output

MiB = 1 << 20


class Terminal(io.StringIO):
    def isatty(self):
        return True


class Clock(object):
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def _progress(percent, rate=10 * MiB):
    total = 1024 * MiB
    done = int(total * percent / 100)
    return {'percent': percent, 'bytes_done': done, 'bytes_total': total,
            'rate': rate, 'eta': (total - done) / rate if rate else None}


def test_a_terminal_gets_one_bar_redrawn_in_place():
    out = Terminal()
    view = output.ProgressView(out=out)
    view.show(_progress(0.0, rate=None))
    view.show(_progress(50.0))
    view.show(_progress(100.0), force=True)
    view.end('success')

    frames = out.getvalue().split('\r')[1:]
    assert len(frames) == 3
    assert frames[0].startswith('[' + '.' * 30 + '] 0.0% ')
    assert frames[1].startswith('[' + '#' * 15 + '.' * 15 + '] 50.0% '
                                '(512.0 MiB of 1024.0 MiB, 10.0 MiB/s, '
                                '51 s left)')
    assert frames[2].startswith('[' + '#' * 30 + '] 100.0% ')
    assert 'done' in frames[2]
    # Every frame covers the one before, whatever their lengths.
    assert all(len(f.split('\n')[0]) >= 79 for f in frames)
    assert out.getvalue().endswith('\nsuccess\n')


def test_a_pipe_gets_a_plain_line_per_interval():
    out, clock = io.StringIO(), Clock()
    view = output.ProgressView(out=out, interval=5.0, clock=clock)
    for second in range(12):
        clock.now = float(second)
        view.show(_progress(second * 8.0))
    view.show(_progress(100.0), force=True)
    view.end('success')

    lines = out.getvalue().splitlines()
    # At 0, 5 and 10 s, the final one forced, then the status.
    assert [line.split('%')[0] for line in lines[:-1]] == [
        '0.0', '40.0', '80.0', '100.0']
    assert '\r' not in out.getvalue() and '#' not in out.getvalue()
    assert lines[-1] == 'success'
