"""Before a pool is created: the VM size must be offered and unrestricted in the cluster's region
(and requested zones), and the vCPU quota must have room; otherwise the provisioner fails with
SkuNotAvailable / QuotaExceeded and a message naming the size, region, quota family, needed and
available vCPUs, and creates nothing. Also the pure checks on their own."""

from __future__ import annotations

import pytest
from aks_standin import ArmStandIn, location_restriction, usage, vm_sku, zone_restriction
from aks_support import A100, NC12, converge, provisioner, request
from kaito_aks import CapacityProblem, VmSize, check_quota, check_vm_size

from kaito.testing import EmulatedCluster

pytestmark = pytest.mark.timeout(30)


async def test_quota_exhausted_fails_with_the_numbers(
    cluster: EmulatedCluster, arm: ArmStandIn
) -> None:
    prov = provisioner(cluster, arm)
    # standardNCADSA100v4Family: limit 24, 0 used; 2 x 24 vCPUs are needed
    status = await prov.provision(request(instance_type=A100, count=2))
    assert status.failed
    assert status.reason == "QuotaExceeded"
    assert status.message == (
        "not enough vCPU quota in eastus for 2 x Standard_NC24ads_A100_v4 (24 vCPUs each): "
        "quota family standardNCADSA100v4Family needs 48 vCPUs, 24 available "
        "(limit 24, in use 0)"
    )
    assert arm.pool_calls("PUT") == []


async def test_regional_total_quota_counts_too(cluster: EmulatedCluster, arm: ArmStandIn) -> None:
    arm.usages = [usage("cores", 340, 350), usage("standardNCSv3Family", 0, 48)]
    status = await provisioner(cluster, arm).provision(request(instance_type=NC12, count=1))
    assert status.reason == "QuotaExceeded"
    assert "the regional vCPU quota (cores) needs 12 vCPUs, 10 available" in status.message


async def test_sku_restricted_in_the_region_fails(
    cluster: EmulatedCluster, arm: ArmStandIn
) -> None:
    arm.skus = [
        vm_sku(
            A100,
            family="standardNCADSA100v4Family",
            vcpus=24,
            restrictions=[location_restriction("eastus")],
        ),
    ]
    status = await provisioner(cluster, arm).provision(request(instance_type=A100))
    assert status.failed
    assert status.reason == "SkuNotAvailable"
    assert status.message == (
        "VM size Standard_NC24ads_A100_v4 is not available in region eastus for this "
        "subscription (NotAvailableForSubscription)"
    )
    assert arm.pool_calls("PUT") == []
    assert arm.calls("GET", "/usages") == [], "no quota lookup for a size that is not offered"


async def test_sku_not_offered_in_the_region_fails(
    cluster: EmulatedCluster, arm: ArmStandIn
) -> None:
    status = await provisioner(cluster, arm).provision(request(instance_type="Standard_ND96asr_v4"))
    assert (status.failed, status.reason) == (True, "SkuNotAvailable")
    assert status.message == "VM size Standard_ND96asr_v4 is not offered in region eastus"


async def test_zone_restrictions_matter_for_the_requested_zones(
    cluster: EmulatedCluster, arm: ArmStandIn
) -> None:
    arm.skus = [
        vm_sku(
            NC12,
            family="standardNCSv3Family",
            vcpus=12,
            zones=("1", "2", "3"),
            restrictions=[zone_restriction("eastus", ["2"])],
        ),
    ]
    barred = await provisioner(cluster, arm, zones="1,2").provision(request())
    assert barred.reason == "SkuNotAvailable"
    assert "not available in zone(s) 2 of region eastus" in barred.message

    prov = provisioner(cluster, arm, zones="1,3")
    statuses = await converge(prov, request(), cluster)
    assert statuses[-1].ready
    assert arm.pool_calls("PUT")[0].body["properties"]["availabilityZones"] == ["1", "3"]  # type: ignore[index]


async def test_location_comes_from_the_managed_cluster_once(
    cluster: EmulatedCluster, arm: ArmStandIn
) -> None:
    arm.sku_page_size = 1  # the SKU list arrives in pages, followed through nextLink
    prov = provisioner(cluster, arm)
    await prov.provision(request(instance_type=A100, count=2))  # fails on quota
    await prov.provision(request(instance_type=A100, count=2))
    assert len(arm.calls("GET", "/managedClusters/aks-kaito")) == 1
    sku_pages = arm.calls("GET", "/Microsoft.Compute/skus")
    assert len(sku_pages) == 2 * 4
    assert sku_pages[0].query["$filter"] == "location eq 'eastus'"


async def test_a_configured_location_needs_no_cluster_read(
    cluster: EmulatedCluster, arm: ArmStandIn
) -> None:
    prov = provisioner(cluster, arm, location="East US")
    await prov.provision(request())
    assert arm.calls("GET", "/managedClusters/aks-kaito") == []
    assert arm.calls("GET", "/locations/eastus/usages")


# -- the pure checks -----------------------------------------------------------------------


def test_check_vm_size_matches_names_and_regions_loosely() -> None:
    skus = [vm_sku(NC12, family="standardNCSv3Family", vcpus=12, location="westeurope")]
    found = check_vm_size(skus, "standard_nc12s_V3", "West Europe")
    assert found == VmSize(name=NC12, family="standardNCSv3Family", vcpus=12, zones=("1", "2", "3"))
    assert isinstance(check_vm_size(skus, NC12, "eastus"), CapacityProblem)
    other_kind = [{**skus[0], "resourceType": "disks"}]
    assert isinstance(check_vm_size(other_kind, NC12, "westeurope"), CapacityProblem)


def test_check_vm_size_names_zones_that_are_not_offered() -> None:
    skus = [vm_sku(NC12, family="f", vcpus=12, zones=("1", "2"))]
    problem = check_vm_size(skus, NC12, "eastus", ["2", "3"])
    assert isinstance(problem, CapacityProblem)
    assert problem.message == (
        "VM size Standard_NC12s_v3 is not offered in zone(s) 3 of region eastus (offered in: 1, 2)"
    )
    # zone restrictions do not matter for a regional (zone-less) pool
    restricted = [
        vm_sku(
            NC12, family="f", vcpus=12, restrictions=[zone_restriction("eastus", ["1", "2", "3"])]
        )
    ]
    assert isinstance(check_vm_size(restricted, NC12, "eastus"), VmSize)


def test_check_quota_boundaries() -> None:
    size = VmSize(name=NC12, family="standardNCSv3Family", vcpus=12, zones=())
    usages = [usage("standardNCSv3Family", 12, 36), usage("cores", 0, 100)]
    assert check_quota(usages, size, 2, "eastus") is None  # exactly 24 free
    problem = check_quota(usages, size, 3, "eastus")
    assert problem is not None
    assert problem.reason == "QuotaExceeded"
    assert "needs 36 vCPUs, 24 available (limit 36, in use 12)" in problem.message
    # a family ARM reports no quota for is not treated as exhausted
    assert check_quota([usage("cores", 0, 100)], size, 3, "eastus") is None
    # an over-used family reports 0 available, not a negative number
    assert "0 available" in str(check_quota([usage("standardNCSv3Family", 50, 48)], size, 1, "x"))
