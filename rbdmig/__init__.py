"""rbdmig: fast, lossless volume migration drivers for Ceph RBD."""
