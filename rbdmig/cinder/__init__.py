"""The driver operators name in cinder.conf: ``rbdmig.cinder.RBDDriver``.

The only package of rbdmig that imports Cinder.
"""

from rbdmig.cinder.driver import RBDDriver  # noqa: F401
