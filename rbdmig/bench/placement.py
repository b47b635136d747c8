"""Where a bench sandbox's PGs live: spread evenly over the OSDs."""

import json
import time

# CRUSH placed the 16 PGs of the two pools 2/10/4 over three OSDs (and
# 20/29/15 with 32 PGs a pool): one OSD would have held most of every
# volume.  Explicit upmaps give each OSD its share.


def _ceph_json(cluster, *args):
    return json.loads(cluster.ceph(*(args + ('--format', 'json'))))


def pgs_per_osd(cluster):
    """``{osd id: PGs}``, as ``ceph osd df`` counts them."""
    out = _ceph_json(cluster, 'osd', 'df')
    return {str(n['id']): n['pgs'] for n in out['nodes']}


def pool_size(cluster, pool):
    """The pool's ``size``: copies of each object."""
    return int(_ceph_json(cluster, 'osd', 'pool', 'get', pool,
                          'size')['size'])


def _pgs(cluster, pool):
    pgs = _ceph_json(cluster, 'pg', 'ls-by-pool', pool)
    return pgs['pg_stats'] if isinstance(pgs, dict) else pgs


def spread(cluster, timeout=300):
    """Map each pool's PG ``i`` to OSD ``(i + shift) % osds`` by upmap.

    Pools of size 1 only (one OSD per PG).  ``shift`` differs per pool so
    that the PGs left over fall on different OSDs.  Waits until every PG
    is up where it should be and active+clean again.

    :raises RuntimeError: not so within ``timeout`` seconds; the message
        counts the PGs' states.
    """
    osds = cluster.osd_count
    if osds < 2:
        return
    cluster.ceph('osd', 'set-require-min-compat-client', 'luminous')
    want = {}
    for shift, pool in enumerate(cluster.pools):
        for pg in _pgs(cluster, pool):
            index = int(pg['pgid'].split('.')[1], 16)
            want[pg['pgid']] = (index + shift) % osds
            # The whole mapping, not items "from -> to": the mgr's PG
            # stats can lag the OSD map, and an item whose "from" is not
            # the PG's OSD any more is ignored.
            cluster.ceph('osd', 'pg-upmap', pg['pgid'],
                         str(want[pg['pgid']]))
    deadline = time.monotonic() + timeout
    while True:
        pgs = [pg for pool in cluster.pools for pg in _pgs(cluster, pool)]
        if all(pg['up'] == [want.get(pg['pgid'])]
               and pg['state'].startswith('active+clean') for pg in pgs):
            return
        if time.monotonic() > deadline:
            states = {}
            for pg in pgs:
                key = '%s on %s, want %s' % (pg['state'], pg['up'],
                                             want.get(pg['pgid']))
                states[key] = states.get(key, 0) + 1
            raise RuntimeError('PGs not where they should be, active+clean, '
                               '%d s after the upmaps: %s' % (timeout,
                                                              states))
        time.sleep(0.2)
