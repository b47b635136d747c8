"""Make the distribution's rados and rbd bindings importable here.

Debian installs python3-rados and python3-rbd into dist-packages for its
own /usr/bin/python3.  A venv with --system-site-packages would see all of
dist-packages (whose old pyOpenSSL breaks pip's cryptography), so instead
this links just the two extension modules into a folder and adds that
folder to the running interpreter's site-packages with a .pth file.
Run it with the interpreter of the environment to set up (tox does).
"""

import glob
import os
import sys
import sysconfig

DIST = '/usr/lib/python3/dist-packages'


def main():
    tag = 'cpython-%d%d' % sys.version_info[:2]
    site = sysconfig.get_paths()['purelib']
    target = os.path.join(sys.prefix, 'ceph-bindings')
    os.makedirs(target, exist_ok=True)
    found = []
    for module in ('rados', 'rbd'):
        matches = glob.glob(os.path.join(DIST, '%s.%s-*.so' % (module, tag)))
        if not matches:
            sys.exit('link_ceph_bindings: no %s binding for %s in %s; '
                     'install python3-%s and use Debian\'s python3.'
                     % (module, tag, DIST, module))
        link = os.path.join(target, os.path.basename(matches[0]))
        if os.path.lexists(link):
            os.unlink(link)
        os.symlink(matches[0], link)
        found.append(link)
    with open(os.path.join(site, 'rbdmig-ceph-bindings.pth'), 'w') as pth:
        pth.write(target + '\n')


if __name__ == '__main__':
    main()
