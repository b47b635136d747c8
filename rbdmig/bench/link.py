"""A host behind a thin link: a network namespace and a shaped veth pair."""

import ipaddress
import logging
import os
import random
import shutil
import subprocess

LOG = logging.getLogger(__name__)

TOOLS = ('ip', 'tc')
# Link addresses are /30s drawn from here, clear of any the host has.
POOL = ipaddress.ip_network('10.213.0.0/16')
# tbf's queue: what it may hold before it drops (the link's buffer).
LATENCY = '50ms'


class LinkError(RuntimeError):
    """The thin link could not be set up (or torn down)."""


def missing():
    """What the thin link needs and this host lacks: root, ``ip``, ``tc``."""
    lacks = [] if os.geteuid() == 0 else ['root']
    return lacks + [tool for tool in TOOLS if not shutil.which(tool)]


def check(mbit):
    """Raise :class:`LinkError`, one sentence, if the link cannot be made.

    :param mbit: the link's rate; 0 (the case left out) checks nothing.
    """
    lacks = missing() if mbit else []
    if lacks:
        raise LinkError(
            'The thin-link case (--link-mbit %d) needs root and the ip and '
            'tc commands (iproute2) to make a network namespace and a '
            'shaped veth pair; missing: %s.  Run as root with iproute2 '
            'installed, or leave the case out with --link-mbit 0.'
            % (mbit, ', '.join(lacks)))


def burst_bytes(mbit):
    """tbf's bucket: 10 ms at the rate, and never under a 64 KiB GSO frame.

    A bucket smaller than one (veth) segment would stall the link.
    """
    return max(mbit * 1000 * 1000 // 8 // 100, 128 * 1024)


def _taken():
    out = subprocess.run(('ip', '-o', '-4', 'addr', 'show'),
                         capture_output=True, text=True, check=False).stdout
    taken = []
    for line in out.splitlines():
        words = line.split()
        if 'inet' in words[:-1]:
            taken.append(ipaddress.ip_interface(
                words[words.index('inet') + 1]).network)
    return taken


def free_subnet(taken=(), rng=random):
    """A /30 of :data:`POOL` overlapping none of ``taken`` (networks)."""
    for _ in range(200):
        index = rng.randrange(2 ** (30 - POOL.prefixlen))
        net = ipaddress.ip_network((int(POOL.network_address) + 4 * index,
                                    30))
        if not any(net.overlaps(t) for t in taken):
            return net
    raise LinkError('Found no free /30 in %s for the thin link.' % POOL)


class Link:
    """A network namespace whose only link to the host is a veth pair
    shaped to ``mbit`` Mbit/s each way (tbf on both ends).

    The namespace's default route is the host's end, so it reaches any
    of the host's addresses through its link: several namespaces (hosts
    of a fleet) reach one cluster listening on one of their links' host
    ends, each through its own shaped link.
    Names are unique (this process's PID and a random tag), so runs side
    by side do not collide.  Use it as a context manager: the namespace
    and the veth pair are removed on the way out, failure or not.

    :param mbit: the rate of the link, each way, in Mbit/s.
    :param subnet: the /30 of the link (default: a free one, at
        :meth:`__enter__`).
    :param tag: ends the names (default: the PID and a random byte).
    :param prefix: begins the namespace's name.
    """

    def __init__(self, mbit, subnet=None, tag=None, prefix='rbdmig-bench-'):
        self.mbit = int(mbit)
        tag = tag or '%06x%02x' % (os.getpid() & 0xffffff,
                                   random.randrange(256))
        self.netns = prefix + tag
        # Interface names are at most 15 characters.
        self.host_dev, self.ns_dev = 'rbl%sh' % tag, 'rbl%sn' % tag
        self.subnet = subnet
        self.up = False

    @property
    def host_ip(self):
        """The host's end: where the cluster listens."""
        return str(self.subnet.network_address + 1)

    @property
    def ns_ip(self):
        return str(self.subnet.network_address + 2)

    def _tbf(self, dev):
        return ('tc', 'qdisc', 'add', 'dev', dev, 'root', 'tbf', 'rate',
                '%dmbit' % self.mbit, 'burst', str(burst_bytes(self.mbit)),
                'latency', LATENCY)

    def setup_commands(self):
        """The commands that make the namespace and the link, in order."""
        ns = ('ip', 'netns', 'exec', self.netns)
        mask = '/%d' % self.subnet.prefixlen
        return [
            ('ip', 'netns', 'add', self.netns),
            ('ip', 'link', 'add', self.host_dev, 'type', 'veth', 'peer',
             'name', self.ns_dev, 'netns', self.netns),
            ('ip', 'addr', 'add', self.host_ip + mask, 'dev', self.host_dev),
            ('ip', 'link', 'set', self.host_dev, 'up'),
            ns + ('ip', 'addr', 'add', self.ns_ip + mask, 'dev',
                  self.ns_dev),
            ns + ('ip', 'link', 'set', self.ns_dev, 'up'),
            ns + ('ip', 'link', 'set', 'lo', 'up'),
            ns + ('ip', 'route', 'add', 'default', 'via', self.host_ip),
            # Host to namespace (what the mover reads), and back (what it
            # writes).
            self._tbf(self.host_dev),
            ns + self._tbf(self.ns_dev),
        ]

    def teardown_commands(self):
        """Removing the namespace removes its end, and so the pair; the
        host's end is removed too, in case the namespace never had one."""
        return [('ip', 'netns', 'delete', self.netns),
                ('ip', 'link', 'delete', self.host_dev)]

    def wrap(self, argv):
        """``argv`` run inside the namespace."""
        return ('ip', 'netns', 'exec', self.netns) + tuple(argv)

    def __enter__(self):
        check(self.mbit)
        if self.subnet is None:
            self.subnet = free_subnet(_taken())
        self.up = True
        try:
            for cmd in self.setup_commands():
                _run(cmd)
        except BaseException:
            self._close_quietly()
            raise
        LOG.info('Thin link %s: %s <-> %s at %d Mbit/s', self.netns,
                 self.host_ip, self.ns_ip, self.mbit)
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.close()
        else:
            self._close_quietly()

    def _close_quietly(self):
        """Close on the way out of an error: that error is the one to see."""
        try:
            self.close()
        except LinkError as err:
            LOG.error('%s', err)

    def close(self):
        """Remove the namespace and the veth pair; gone already is fine.

        :raises LinkError: one of them is still there afterwards.
        """
        if not self.up:
            return
        for cmd in self.teardown_commands():
            subprocess.run(cmd, capture_output=True, check=False)
        left = [what for what, cmd in (
            ('namespace ' + self.netns, ('ip', 'netns', 'pids',
                                         self.netns)),
            ('interface ' + self.host_dev, ('ip', 'link', 'show',
                                            self.host_dev)))
            if subprocess.run(cmd, capture_output=True,
                              check=False).returncode == 0]
        self.up = False
        if left:
            raise LinkError('Could not remove the thin link\'s %s.'
                            % ' and '.join(left))


def _run(cmd):
    res = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if res.returncode:
        raise LinkError('%s failed (exit %d): %s' % (
            ' '.join(cmd), res.returncode, res.stderr.strip()[-300:]))
