"""Node pools: parsing, the first-match rule, and the settings a node of a pool gets (pure)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from simdev.plugin.config import Config, ConfigError, for_node, load, with_spec
from simdev.plugin.pools import MAX_POOLS, NodePool, PoolError, overlay, parse_pools, pool_for

BASE = Config(node_name="n1", number_devices=2, simulated_device="gpu")


def pool(name: str, selector: dict[str, str] | None = None, **overrides: Any) -> dict[str, Any]:
    return {"name": name, "nodeSelector": selector or {}, **overrides}


SPEC: dict[str, Any] = {
    "numberDevices": 4,
    "envPrefix": "GPU",
    "topology": {"numaNodes": 2},
    "sharing": {"replicas": 2, "policy": "Packed", "failRequestsGreaterThanOne": True},
    "nodePools": [
        pool("big", {"size": "big"}, numberDevices=8, sharing={"replicas": 3}),
        pool("flat", {"numa": "none"}, topology={"numaNodes": 1}),
        pool("big-too", {"size": "big", "zone": "a"}, numberDevices=16),
    ],
}


def test_the_first_matching_pool_wins() -> None:
    pools = parse_pools(SPEC["nodePools"])
    assert pool_for(pools, {"size": "big", "zone": "a"}) == pools[0]
    assert pool_for(pools, {"zone": "a", "numa": "none"}) == pools[1]
    assert pool_for(pools, {"size": "small"}) is None
    assert pool_for((), {"size": "big"}) is None


def test_an_empty_selector_takes_every_node() -> None:
    (everything,) = parse_pools([pool("all")])
    assert everything.matches({}) and everything.matches({"any": "label"})


def test_overrides_are_flat_and_merge_key_by_key() -> None:
    big, flat, _ = parse_pools(SPEC["nodePools"])
    assert big.settings == {"numberDevices": 8, "sharing.replicas": 3}
    assert flat.settings == {"topology.numaNodes": 1}
    top = {"numberDevices": 4, "sharing.replicas": 2, "sharing.policy": "Packed"}
    assert overlay(top, big) == {
        "numberDevices": 8,
        "sharing.replicas": 3,
        "sharing.policy": "Packed",
    }
    assert overlay(top, None) == top


def test_a_node_gets_its_pools_settings_over_the_top_level() -> None:
    top = with_spec(BASE, SPEC, "SimulatedDevice gpu")
    assert (top.number_devices, top.pool) == (4, "")
    big = for_node(top, {"size": "big"})
    # The pool's count and replicas; the rest of sharing and everything else is the top's.
    assert (big.pool, big.number_devices, big.sharing_replicas) == ("big", 8, 3)
    assert (big.sharing_policy, big.fail_requests_greater_than_one) == ("Packed", True)
    assert (big.numa_nodes, big.env_prefix, big.advertised_devices) == (2, "GPU", 24)
    flat = for_node(top, {"numa": "none"})
    assert (flat.pool, flat.number_devices, flat.numa_nodes, flat.sharing_replicas) == (
        "flat",
        4,
        1,
        2,
    )
    assert for_node(top, {"size": "small"}) == top
    # The node's settings keep the pools, so they stay comparable and re-resolvable.
    assert big.node_pools == top.node_pools and big.faults == top.faults


def test_without_pools_every_node_gets_the_top_level() -> None:
    top = with_spec(BASE, {"numberDevices": 3}, "SimulatedDevice gpu")
    assert top.node_pools == () and for_node(top, {"size": "big"}) is top


@pytest.mark.parametrize(
    ("pools", "expected"),
    [
        ("big", "nodePools must be a list"),
        ([pool("big")] * 2, "nodePools: the name 'big' is used twice"),
        ([pool(f"p{i}") for i in range(MAX_POOLS + 1)], "at most 32 entries"),
        ([pool("Big")], "nodePools[0].name must be a DNS label"),
        ([{"name": "x"}], "nodePools[0] (x).nodeSelector is required"),
        ([pool("x", {"zone": 1})], "nodePools[0] (x).nodeSelector is required"),  # type: ignore[dict-item]
        ([pool("x", sharing=3)], "nodePools[0] (x).sharing must be a mapping"),
        ([pool("x", numberDevice=3)], "nodePools[0] (x): unknown field numberDevice"),
        ([pool("x", sharing={"replica": 2})], "unknown field sharing.replica"),
        ([pool("x", numberDevices=True)], "nodePools[0] (x).numberDevices must be an integer"),
        ([pool("x", numberDevices="4")], "nodePools[0] (x).numberDevices must be an integer"),
        ([pool("x", sharing={"policy": 1})], "(x).sharing.policy must be a string"),
        (
            [pool("x", sharing={"failRequestsGreaterThanOne": "yes"})],
            "(x).sharing.failRequestsGreaterThanOne must be a boolean",
        ),
    ],
)
def test_bad_pools_are_named(pools: Any, expected: str) -> None:
    with pytest.raises(PoolError) as err:
        parse_pools(pools)
    assert expected in str(err.value)
    with pytest.raises(ConfigError) as config_err:
        with_spec(BASE, {"nodePools": pools}, "SimulatedDevice gpu")
    assert str(config_err.value).startswith("invalid nodePools of SimulatedDevice gpu: ")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {"numberDevices": 2500, "nodePools": [pool("a"), pool("b", sharing={"replicas": 5})]},
            "invalid numberDevices * sharing.replicas in nodePools[1] (b) of SimulatedDevice gpu: "
            "2500 * 5 = 12500 devices, must be at most 10000",
        ),
        (
            {"sharing": {"replicas": 3}, "nodePools": [pool("b", numberDevices=4000)]},
            "invalid numberDevices * sharing.replicas in nodePools[0] (b) of SimulatedDevice gpu: "
            "4000 * 3 = 12000 devices",
        ),
        (
            {"nodePools": [pool("b", topology={"numaNodes": 65})]},
            'invalid topology.numaNodes "65" in nodePools[0] (b) of SimulatedDevice gpu: ',
        ),
        (
            # The top level's prefix is too long for the pool's device indices.
            {"annotationPrefix": "x.io/" + "a" * 61, "nodePools": [pool("b", numberDevices=11)]},
            'invalid annotationPrefix "x.io/aaa',
        ),
    ],
)
def test_each_pool_is_checked_as_its_nodes_get_it(spec: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        with_spec(BASE, spec, "SimulatedDevice gpu")
    assert str(err.value).startswith(expected), str(err.value)
    assert "\n" not in str(err.value)


def test_the_config_file_carries_pools(tmp_path: Path) -> None:
    f = tmp_path / "plugin.yaml"
    f.write_text(
        "numberDevices: 2\nnodePools:\n- {name: big, nodeSelector: {size: big}, numberDevices: 6}\n"
    )
    cfg = load({"NODE_NAME": "n"}, f)
    assert cfg.node_pools == (NodePool("big", {"size": "big"}, {"numberDevices": 6}),)
    assert for_node(cfg, {"size": "big"}).number_devices == 6
    f.write_text("nodePools: [{name: big, nodeSelector: {}, numberDevices: 20000}]\n")
    with pytest.raises(ConfigError) as err:
        load({"NODE_NAME": "n"}, f)
    assert str(err.value).startswith(
        f'invalid numberDevices "20000" in nodePools[0] (big) of --config {f}: must be at most'
    )
