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


def spread(cluster, timeout=120):
    """Map each pool's PG ``i`` to OSD ``(i + shift) % osds`` by upmap.

    Pools of size 1 only (one OSD per PG).  ``shift`` differs per pool so
    that the PGs left over fall on different OSDs.  Waits until every PG
    is active+clean again.
    """
    osds = cluster.osd_count
    if osds < 2:
        return
    cluster.ceph('osd', 'set-require-min-compat-client', 'luminous')
    expected = {str(n): 0 for n in range(osds)}
    for shift, pool in enumerate(cluster.pools):
        pgs = _ceph_json(cluster, 'pg', 'ls-by-pool', pool)
        pgs = pgs['pg_stats'] if isinstance(pgs, dict) else pgs
        for pg in pgs:
            index = int(pg['pgid'].split('.')[1], 16)
            now, want = pg['up'][0], (index + shift) % osds
            expected[str(want)] += 1
            if now != want:
                cluster.ceph('osd', 'pg-upmap-items', pg['pgid'], str(now),
                             str(want))
    deadline = time.monotonic() + timeout
    # The mgr's view lags the OSD map: wait for the counts, then clean.
    while pgs_per_osd(cluster) != expected or not _clean(cluster):
        if time.monotonic() > deadline:
            raise RuntimeError('PGs not active+clean %d s after the upmaps'
                               % timeout)
        time.sleep(0.2)


def _clean(cluster):
    pgmap = _ceph_json(cluster, 'status')['pgmap']
    clean = sum(s['count'] for s in pgmap['pgs_by_state']
                if s['state_name'] == 'active+clean')
    return clean == pgmap['num_pgs'] and not pgmap.get('misplaced_objects')
