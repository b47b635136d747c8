"""``rbdmig bench``: rbdmig against Ceph's own tools and Cinder's loop."""
