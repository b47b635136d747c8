"""rbdmig.ext without Ceph: availability and argument validation."""

import pytest

from rbdmig import ext
from tests.unit import rbd_fixtures

SPEC = ext.ClusterSpec('/nonexistent/ceph.conf')


@pytest.fixture
def disabled(monkeypatch):
    """The extension switched off, so a call that validates does no I/O."""
    monkeypatch.setenv(ext.DISABLE_ENV, '1')


@pytest.mark.parametrize('value', ['1', 'true', 'yes'])
def test_environment_variable_disables(monkeypatch, value):
    monkeypatch.setenv(ext.DISABLE_ENV, value)

    assert not ext.available()
    assert ext.unavailable_reason() == (
        f'disabled by RBDMIG_DISABLE_OFFLOAD={value}')


@pytest.mark.parametrize('value', ['0', 'false', ''])
def test_environment_variable_false_does_not_disable(monkeypatch, value):
    monkeypatch.setenv(ext.DISABLE_ENV, value)
    monkeypatch.setattr(ext, '_EXTENSION', 'rbdmig.ext')  # importable

    assert ext.available()
    assert ext.unavailable_reason() is None


def test_missing_module_is_unavailable_with_the_import_error(monkeypatch):
    monkeypatch.delenv(ext.DISABLE_ENV, raising=False)
    monkeypatch.setattr(ext, '_EXTENSION', 'rbdmig.ext._not_built')

    assert not ext.available()
    assert ext.unavailable_reason() == (
        'the rbdmig.ext._not_built extension was not built: '
        "No module named 'rbdmig.ext._not_built'")


@pytest.mark.parametrize('call', [
    lambda: ext.copy_objects(SPEC, 'a', 'p', 'b', 'q', [1]),
    lambda: ext.object_numbers(SPEC, 'a', 'p'),
    lambda: ext.copy_image(SPEC, 'a', 'img', 'b', 'img'),
    lambda: ext.deep_copy_image(SPEC, 'a', 'img', 'b', 'img'),
    lambda: ext.object_checksums(SPEC, 'a', 'p', [1]),
    lambda: ext.xxhash64(b''),
])
def test_calls_raise_unavailable_with_the_reason(disabled, call):
    with pytest.raises(ext.OffloadUnavailable,
                       match='disabled by RBDMIG_DISABLE_OFFLOAD=1'):
        call()


@pytest.mark.parametrize('kwargs,error,match', [
    ({'conf_path': 3}, TypeError, 'conf_path must be a str, not int.'),
    ({'cluster_name': ''}, ValueError, 'cluster_name must not be empty.'),
    ({'user': 'client.cinder'}, ValueError, "without 'client.'"),
    ({'keyring_path': b'k'}, TypeError, 'keyring_path must be a str'),
    ({'client_mount_timeout': -1}, ValueError,
     r'client_mount_timeout must be between 0 and \d+, not -1.'),
    ({'rados_osd_op_timeout': 1.5}, TypeError,
     'rados_osd_op_timeout must be an int, not float.'),
    ({'rados_mon_op_timeout': True}, TypeError, 'must be an int, not bool.'),
])
def test_cluster_spec_validates(kwargs, error, match):
    kwargs.setdefault('conf_path', None)
    with pytest.raises(error, match=match):
        ext.ClusterSpec(**kwargs)


def test_cluster_spec_defaults_let_librados_decide():
    spec = ext.ClusterSpec(None)

    assert spec._args() == (None, 'ceph', 'admin', None, 0, 0, 0)


@pytest.mark.parametrize('kwargs,error,match', [
    ({'cluster': '/etc/ceph/ceph.conf'}, TypeError,
     'cluster must be a ClusterSpec, not str.'),
    ({'src_pool': ''}, ValueError, 'src_pool must not be empty.'),
    ({'src_pool': -1}, ValueError, 'src_pool must be between 0'),
    ({'dst_pool': 1.0}, TypeError, 'dst_pool must be a str, not float.'),
    ({'dst_pool': True}, TypeError, 'dst_pool must be a str, not bool.'),
    ({'dst_prefix': None}, TypeError, 'dst_prefix must be a str'),
    ({'objects': 4}, TypeError,
     'objects must be an iterable of object numbers, not int.'),
    ({'objects': 'rbd_data.1.0000000000000000'}, TypeError,
     'objects must be an iterable of object numbers, not str.'),
    ({'objects': [0, -1]}, ValueError,
     'objects must hold object numbers between 0 and 18446744073709551615'),
    ({'objects': [2 ** 64]}, ValueError, 'objects must hold object numbers'),
    ({'objects': [2.0]}, TypeError, r'objects must hold ints'),
    ({'objects': None}, TypeError, 'objects must hold ints'),
    ({'queue_depth': 0}, ValueError,
     'queue_depth must be between 1 and 1024, not 0.'),
    ({'queue_depth': ext.MAX_QUEUE_DEPTH + 1}, ValueError, 'queue_depth'),
    ({'src_namespace': None}, TypeError, 'src_namespace must be a str'),
    ({'callback': print}, TypeError, 'callback must be an rbdmig'),
    ({'keep_holes': 1, 'object_size': 4096}, TypeError,
     'keep_holes must be a bool, not int.'),
    ({'keep_holes': True}, TypeError, 'object_size must be an int, not '
     'NoneType.'),
])
def test_copy_objects_validates_before_anything_else(disabled, kwargs,
                                                     error, match):
    args = dict(cluster=SPEC, src_pool='a', src_prefix='rbd_data.1',
                dst_pool='b', dst_prefix='rbd_data.2', objects=range(4))
    args.update(kwargs)
    with pytest.raises(error, match=match):
        ext.copy_objects(**args)


@pytest.mark.parametrize('kwargs,error,match', [
    ({'cluster': None}, TypeError, 'cluster must be a ClusterSpec'),
    ({'pool': ''}, ValueError, 'pool must not be empty.'),
    ({'pool': -3}, ValueError, 'pool must be between 0'),
    ({'prefix': b'rbd_data'}, TypeError, 'prefix must be a str'),
    ({'objects': 4}, TypeError, 'objects must be an iterable'),
    ({'objects': [-1]}, ValueError, 'objects must hold object numbers'),
    ({'queue_depth': 0}, ValueError, 'queue_depth must be between 1'),
    ({'namespace': None}, TypeError, 'namespace must be a str'),
    ({'callback': None}, TypeError, 'callback must be an rbdmig'),
])
def test_object_checksums_validates_before_anything_else(disabled, kwargs,
                                                         error, match):
    args = dict(cluster=SPEC, pool=3, prefix='rbd_data.1', objects=range(4))
    args.update(kwargs)
    with pytest.raises(error, match=match):
        ext.object_checksums(**args)


@pytest.mark.parametrize('kwargs,error,match', [
    ({'cluster': 'ceph.conf'}, TypeError, 'cluster must be a ClusterSpec'),
    ({'pool': ''}, ValueError, 'pool must not be empty.'),
    ({'pool': True}, TypeError, 'pool must be a str, not bool.'),
    ({'prefix': ''}, ValueError, 'prefix must not be empty.'),
    ({'namespace': 0}, TypeError, 'namespace must be a str'),
])
def test_object_numbers_validates_before_anything_else(disabled, kwargs,
                                                       error, match):
    args = dict(cluster=SPEC, pool=3, prefix='rbd_data.1')
    args.update(kwargs)
    with pytest.raises(error, match=match):
        ext.object_numbers(**args)


@pytest.mark.parametrize('copy', [ext.copy_image, ext.deep_copy_image])
@pytest.mark.parametrize('kwargs,error,match', [
    ({'src_name': ''}, ValueError, 'src_name must not be empty.'),
    ({'src_snapshot': 7}, TypeError, 'src_snapshot must be a str'),
    ({'order': 11}, ValueError, 'order must be between 12 and 25, not 11.'),
    ({'order': 26}, ValueError, 'order must be between 12 and 25'),
    ({'features': -1}, ValueError, 'features must be between 0'),
    ({'stripe_unit': 0}, ValueError, 'stripe_unit must be between 1'),
    ({'stripe_count': '4'}, TypeError, 'stripe_count must be an int'),
    ({'data_pool': ''}, ValueError, 'data_pool must not be empty.'),
    ({'callback': lambda done, total: None}, TypeError, 'callback must'),
])
def test_image_copies_validate_before_anything_else(disabled, copy, kwargs,
                                                    error, match):
    args = dict(src_pool='a', src_name='img', dst_pool='b', dst_name='img')
    args.update(kwargs)
    with pytest.raises(error, match=match):
        copy(SPEC, **args)


def test_copy_image_validates_sparse_size(disabled):
    with pytest.raises(ValueError, match='sparse_size must be between 0'):
        ext.copy_image(SPEC, 'a', 'img', 'b', 'img', sparse_size=-1)


def test_reporter_feeds_a_progress_callback():
    recorder = rbd_fixtures.ProgressRecorder()
    report = ext._reporter(recorder)

    report(0, 10)
    report(4, 10)
    report(10, 10)

    assert recorder.seen == [(0, 10), (0, 10), (4, 10), (10, 10)]
