#!/usr/bin/env bash
# Set up everything rbdmig needs on a Debian machine, idempotently:
# Ceph's daemons and Python bindings from the distribution, and a virtual
# environment (.venv) built from Debian's python3 that sees exactly those
# two bindings and nothing else of dist-packages.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# libradospp-dev, librbd-dev and g++ build rbdmig.ext._offload (optional:
# without them rbdmig installs and runs, minus server-side copy).
# postgresql: the unit tests start a throwaway server of their own from
# its binaries (/usr/lib/postgresql/*/bin), as root or not.  iproute2
# (ip, tc) makes the bench's thin link.
PACKAGES="ceph-mon ceph-osd ceph-mgr ceph-common python3-rados python3-rbd
python3-venv python3-dev gcc g++ libradospp-dev librbd-dev postgresql
iproute2"
missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" \
        || missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "setup: installing distribution packages:$missing"
    $SUDO apt-get update -qq
    # With Recommends, as the packages were proven with.
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
        $missing >/dev/null
fi

PY=/usr/bin/python3
if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv from $PY"
    $PY -m venv .venv
fi
.venv/bin/python tools/link_ceph_bindings.py
if ! .venv/bin/python -c 'import rbdmig, pytest, tox' 2>/dev/null \
        || [ setup.cfg -nt .venv/.rbdmig-installed ] \
        || [ setup.py -nt .venv/.rbdmig-installed ] \
        || [ rbdmig/ext/_offload.cpp -nt .venv/.rbdmig-installed ] \
        || [ requirements.txt -nt .venv/.rbdmig-installed ] \
        || [ test-requirements.txt -nt .venv/.rbdmig-installed ]; then
    echo "setup: installing Python dependencies into .venv"
    .venv/bin/pip install -q --disable-pip-version-check --upgrade pip
    .venv/bin/pip install -q --disable-pip-version-check \
        -r requirements.txt -r test-requirements.txt tox matplotlib
    .venv/bin/pip install -q --disable-pip-version-check --no-deps -e .
    touch .venv/.rbdmig-installed
fi
echo "setup: ready ($(.venv/bin/python -c 'import rados, rbd; print("rados", rados.__file__.rsplit("/",1)[-1])'))"
