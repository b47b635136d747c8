"""What a sandbox writes: ceph.conf, keyrings and cephx secrets."""

import base64
import os
import struct
import time

PG_NUM = 8
BINARIES = ('ceph', 'ceph-mon', 'ceph-mgr', 'ceph-osd', 'monmaptool', 'rbd')
_CEPH_ENV = ('CEPH_ARGS', 'CEPH_CONF', 'CEPH_KEYRING')  # dropped for children
# Optional mgr modules, not loaded: they only slow the mgr's start down.
MGR_DISABLED = (
    'alerts diskprediction_local influx insights iostat localpool mirroring '
    'nfs osd_perf_query osd_support prometheus restful selftest '
    'snap_schedule stats telegraf test_orchestrator zabbix')

CONF = """\
[global]
fsid = {fsid}
mon host = {mon_addr}
public addr = {public_addr}
ms bind msgr2 = false
auth cluster required = cephx
auth service required = cephx
auth client required = cephx
auth allow insecure global id reclaim = false
keyring = {dir}/ceph.client.admin.keyring
run dir = {dir}/run
crash dir = {dir}/crash
mon data = {dir}/$name
mgr data = {dir}/$name
osd data = {dir}/$name
osd pool default size = 1
osd pool default min size = 1
osd pool default pg num = {pg_num}
osd pool default pg autoscale mode = off
osd crush chooseleaf type = 0
mon allow pool size one = true
mon allow pool delete = true
mon warn on pool no redundancy = false
mon warn on msgr2 not enabled = false
mon data avail warn = 2
mon data avail crit = 1
mon cluster log file = {dir}/log/cluster.log
mon mgr digest period = 1
paxos propose interval = 0.1
mgr stats period = 1
mgr initial modules =
mgr disabled modules = {mgr_disabled}
osd objectstore = {objectstore}
osd crush initial weight = 1
osd fast shutdown notify mon = false
osd memory target = {osd_memory}
osd op num shards = 2
osd op num threads per shard = 1
memstore device bytes = {osd_bytes}
bluestore block create = true
bluestore block size = {osd_bytes}
bluestore block path = {dir}/$name.block
bluestore fsck on mkfs = false
"""
# Each daemon gets its own keyring, log, socket and pid file.
DAEMON_CONF = """
[{type}]
keyring = {dir}/$name/keyring
log file = {dir}/log/$name.log
admin socket = {dir}/run/$name.asok
pid file = {dir}/run/$name.pid
"""


def new_key():
    """Return a new cephx secret, as ``ceph-authtool --gen-print-key``."""
    now = time.time()
    head = struct.pack('<HIIH', 1, int(now), int(now % 1 * 1e9), 16)
    return base64.b64encode(head + os.urandom(16)).decode('ascii')


def write(path, text, mode=0o644):
    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode),
              'w') as f:
        f.write(text)


def write_keyring(path, keys):
    """Write ``{entity: (key, {daemon_type: cap})}`` as a keyring file."""
    lines = []
    for entity, (key, caps) in keys.items():
        lines += [f'[{entity}]', f'\tkey = {key}']
        lines += [f'\tcaps {t} = "{c}"' for t, c in caps.items()]
    write(path, '\n'.join(lines) + '\n', mode=0o600)
