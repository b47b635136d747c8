"""The scheduler's checks: room (thin-aware) and capabilities."""

import pytest

from rbdmig.migration import scheduler

GiB = 1 << 30
THIN = {'free_capacity_gb': 100, 'total_capacity_gb': 200,
        'reserved_percentage': 10, 'thin_provisioning_support': True,
        'max_over_subscription_ratio': 2.0, 'provisioned_capacity_gb': 300}


def test_unknown_capacity_lets_it_try():
    assert scheduler.room({'free_capacity_gb': 'unknown',
                           'total_capacity_gb': 'unknown'}, 10, GiB) is None


def test_thin_counts_the_data_against_free_space_minus_reserve():
    # 100 free, 20 reserved: 80 GiB of data fit, 81 do not.
    assert scheduler.room(THIN, 50, 80 * GiB) is None
    why = scheduler.room(THIN, 50, 81 * GiB)
    assert why == ('it holds 81.00 GiB of data and the destination offers '
                   '80.00 GiB (100.00 free, 20 reserved).')


def test_thin_counts_the_provisioned_size_against_the_ratio():
    # 300 provisioned of 200, ratio 2: 100 GiB more fit, 101 do not.
    assert scheduler.room(THIN, 100, GiB) is None
    assert 'max_over_subscription_ratio 2.0' in scheduler.room(THIN, 101,
                                                               GiB)


def test_a_big_but_empty_volume_fits_a_thin_backend():
    # The provisioned size would not fit thick; the data does, thin.
    assert scheduler.room(THIN, 90, GiB) is None
    assert scheduler.room(dict(THIN, thin_provisioning_support=False),
                          90, GiB) is not None


def test_thick_counts_the_whole_size():
    thick = dict(THIN, thin_provisioning_support=False)
    assert scheduler.room(thick, 80, 0) is None
    assert scheduler.room(thick, 81, 0) == (
        'it needs 81 GiB and the destination offers 80.00 GiB (100.00 '
        'free, 20 reserved).')


def test_a_thin_backend_without_a_ratio_gets_cinders_default():
    caps = dict(THIN, max_over_subscription_ratio=None)
    assert scheduler.room(caps, 3000, GiB) is None  # 3300 of 200: < 20x
    assert 'max_over_subscription_ratio 20.0' in scheduler.room(
        caps, 3800, GiB)


CAPS = {'storage_protocol': 'ceph', 'thin_provisioning_support': True,
        'free_capacity_gb': 50, 'tier': 'ssd',
        'volume_backend_name': 'ceph-b'}


@pytest.mark.parametrize('specs', [
    {}, {'tier': 'ssd'}, {'capabilities:tier': 'ssd'},
    {'thin_provisioning_support': '<is> True'}, {'free_capacity_gb': '>= 10'},
    {'tier': '<or> hdd <or> ssd'}, {'storage_protocol': '<in> ce'},
    {'qos:total_iops_sec': '100'}, {'volume_backend_name': 'ceph-a'}])
def test_specs_the_destination_meets(specs):
    assert scheduler.capabilities(CAPS, specs) is None


@pytest.mark.parametrize('specs', [
    {'tier': 'hdd'}, {'capabilities:tier': 'nvme'},
    {'thin_provisioning_support': '<is> False'}, {'free_capacity_gb': '>= 60'},
    {'tier': '<or> hdd <or> nvme'}, {'replication_enabled': '<is> True'}])
def test_specs_the_destination_does_not_meet(specs):
    why = scheduler.capabilities(CAPS, specs)
    assert why.startswith('its extra spec ') and why.endswith('.')
