"""A throwaway single-host Ceph cluster on loopback, for tests and demos."""

from rbdmig.exception import SandboxError  # noqa: F401
from rbdmig.sandbox.cluster import BINARIES  # noqa: F401
from rbdmig.sandbox.cluster import Cluster  # noqa: F401
from rbdmig.sandbox.processes import MARKER_FILE  # noqa: F401
from rbdmig.sandbox.processes import PIDS_FILE  # noqa: F401
from rbdmig.sandbox.processes import stop_dir  # noqa: F401
