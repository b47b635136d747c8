"""RBDDriver's options: Cinder's RBD names plus migration options."""

from oslo_config import cfg

from rbdmig.ceph import opts as ceph_opts


# Cinder's RBD option names, with Cinder's meanings: a cinder.conf backend
# section works unchanged.  Under Cinder itself, use rbdmig.cinder's driver,
# which uses Cinder's own options.
CINDER_NAMED_OPTS = [
    cfg.StrOpt('rbd_cluster_name', default='ceph',
               help='The name of the Ceph cluster (as in cinder).'),
    cfg.StrOpt('rbd_pool', default='rbd',
               help='The RADOS pool where volumes are stored.'),
    cfg.StrOpt('rbd_user',
               help='The RADOS client name for accessing rbd volumes; '
                    'only set when using cephx authentication.'),
    cfg.StrOpt('rbd_ceph_conf', default='',
               help='Path to the Ceph configuration file; empty means '
                    'librados\' default search.'),
    cfg.StrOpt('rbd_keyring_conf', default='',
               help='Path to the keyring of ``rbd_user``, when ceph.conf '
                    'does not name it.  Only this host reads it: it never '
                    'goes into connection info (OSSN-0085).'),
    cfg.StrOpt('rbd_secret_uuid',
               help='The libvirt secret UUID of ``rbd_user``, passed on in '
                    'connection info.'),
    cfg.IntOpt('rados_connect_timeout', default=-1,
               help='Seconds one attempt to connect to the cluster may '
                    'take (librados\' ``client_mount_timeout``, which also '
                    'bounds monitor commands); negative leaves librados\' '
                    'defaults (300 s to connect).'),
    cfg.IntOpt('rados_connection_retries', default=3, min=1,
               help='Attempts at connecting to the cluster when an attempt '
                    'times out; a wrong key or a missing conf or keyring '
                    'fails at once.'),
    cfg.IntOpt('rados_connection_interval', default=5, min=0,
               help='Seconds between two attempts at connecting '
                    '(``rados_connection_retries``).'),
    cfg.IntOpt('rbd_store_chunk_size', default=4, min=1,
               help='Volumes are chunked into objects of this size, in '
                    'MiB; a power of two.'),
]

RBD_OPTS = CINDER_NAMED_OPTS + ceph_opts.MIGRATION_OPTS
C_STRING_OPTS = ('rbd_cluster_name', 'rbd_pool', 'rbd_user', 'rbd_ceph_conf',
                  'rbd_keyring_conf')
