import setuptools

# rbdmig.ext._offload, C++ against librados and librbd (rbdmig/ext).
# Optional: without g++ or Ceph's headers (libradospp-dev, librbd-dev) the
# build warns and rbdmig installs without it; rbdmig.ext.available() is
# then False and rbdmig.ext.unavailable_reason() says why.
OFFLOAD = setuptools.Extension(
    'rbdmig.ext._offload', sources=['rbdmig/ext/_offload.cpp'],
    libraries=['rbd', 'rados'], language='c++',
    extra_compile_args=['-std=c++17', '-Wall'], optional=True)

setuptools.setup(setup_requires=['pbr>=5.8.0'], pbr=True,
                 ext_modules=[OFFLOAD])
