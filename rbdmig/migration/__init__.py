"""Backend-neutral migration machinery: nothing here imports Ceph."""
