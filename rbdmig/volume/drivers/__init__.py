"""The drivers: RBD (Ceph) and a file backend."""
