"""Ceph access shared by rbdmig's RBD drivers: connections, migration."""
