"""The RBD driver to name in cinder.conf; only this package imports Cinder."""

from rbdmig.cinder.driver import RBDDriver  # noqa: F401
