"""Configuration parsing and validation (pure, no sockets)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simdev.plugin.config import Config, ConfigError, load, with_spec
from simdev.plugin.limits import MAX_DEVICES


def test_defaults_need_only_the_node_name() -> None:
    cfg = load({"NODE_NAME": "worker-1"})
    assert cfg == Config(node_name="worker-1")
    assert cfg.resource_name == "example.com/simple-device"
    assert cfg.number_devices == 2
    assert cfg.socket_path == Path("/var/lib/kubelet/device-plugins/simple-device-plugin.sock")
    assert cfg.kubelet_socket == Path("/var/lib/kubelet/device-plugins/kubelet.sock")
    assert (cfg.simulated_device, cfg.faults) == ("", ())
    assert (cfg.annotation_prefix, cfg.env_prefix, cfg.device_file_prefix) == ("", "", "")


def test_every_variable_is_read() -> None:
    cfg = load(
        {
            "NODE_NAME": "worker-1.example.internal",
            "RESOURCE_NAME": "simdev.io/gpu",
            "PLUGIN_NAME": "gpu-plugin",
            "NUMBER_DEVICES": "5",
            "DEVICE_ID_PREFIX": "gpu",
            "ANNOTATION_PREFIX": "simdev.io/gpu",
            "ENV_PREFIX": "SIM_GPU",
            "DEVICE_FILE_PREFIX": "sim-gpu",
            "DEVICE_PLUGIN_DIR": "/run/dp",
            "SIMULATED_DEVICE": "gpu",
        }
    )
    assert cfg == Config(
        node_name="worker-1.example.internal",
        resource_name="simdev.io/gpu",
        plugin_name="gpu-plugin",
        number_devices=5,
        device_id_prefix="gpu",
        annotation_prefix="simdev.io/gpu",
        env_prefix="SIM_GPU",
        device_file_prefix="sim-gpu",
        device_plugin_dir=Path("/run/dp"),
        simulated_device="gpu",
    )
    assert cfg.socket_path == Path("/run/dp/gpu-plugin.sock")


def test_relative_directories_become_absolute() -> None:
    cfg = load({"NODE_NAME": "n", "DEVICE_PLUGIN_DIR": "dp"})
    assert cfg.device_plugin_dir == Path.cwd() / "dp"


def test_yaml_file_overrides_environment(tmp_path: Path) -> None:
    f = tmp_path / "plugin.yaml"
    f.write_text("numberDevices: 7\nenvPrefix: FROM_FILE\nnodeName: file-node\n")
    cfg = load({"NODE_NAME": "env-node", "NUMBER_DEVICES": "3", "ENV_PREFIX": "ENV"}, f)
    assert (cfg.node_name, cfg.number_devices, cfg.env_prefix) == ("file-node", 7, "FROM_FILE")


def test_json_file_is_accepted(tmp_path: Path) -> None:
    f = tmp_path / "plugin.json"
    f.write_text(json.dumps({"nodeName": "n1", "numberDevices": "4", "pluginName": "p"}))
    cfg = load({}, f)
    assert (cfg.node_name, cfg.number_devices, cfg.plugin_name) == ("n1", 4, "p")


def test_empty_file_changes_nothing(tmp_path: Path) -> None:
    f = tmp_path / "empty.yaml"
    f.write_text("")
    assert load({"NODE_NAME": "n"}, f) == Config(node_name="n")


def test_unknown_file_keys_are_named(tmp_path: Path) -> None:
    f = tmp_path / "plugin.yaml"
    f.write_text("nodeName: n\nnumDevices: 3\nNODE_NAME: x\n")
    with pytest.raises(ConfigError) as err:
        load({}, f)
    assert str(err.value).startswith(f"unknown key(s) in --config {f}: NODE_NAME, numDevices")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("numberDevices: true\n", 'invalid numberDevices "True" in {f}: must be a non-negative'),
        ("nodeName: 12\n", 'invalid nodeName "12" in {f}: must be a string'),
        ("nodeName: ''\n", 'invalid nodeName "" in {f}: must not be empty'),
        ("numberDevices: -1\n", 'invalid numberDevices "-1" in {f}: must be a non-negative'),
        ("- a list\n", "--config {f} must hold a mapping"),
        ("nodeName: [unclosed\n", "cannot parse --config {f}:"),
    ],
)
def test_bad_file_values_name_the_key(tmp_path: Path, content: str, expected: str) -> None:
    f = tmp_path / "plugin.yaml"
    f.write_text(content)
    with pytest.raises(ConfigError) as err:
        load({"NODE_NAME": "n"}, f)
    assert str(err.value).startswith(expected.format(f=f))
    assert "\n" not in str(err.value)


def test_missing_file_is_reported(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"cannot read --config .*missing\.yaml"):
        load({"NODE_NAME": "n"}, tmp_path / "missing.yaml")


def test_node_name_is_required() -> None:
    with pytest.raises(ConfigError, match=r"^NODE_NAME is required"):
        load({})
    with pytest.raises(ConfigError, match=r"^NODE_NAME is required"):
        load({"NODE_NAME": ""})


@pytest.mark.parametrize(
    ("var", "value", "expected"),
    [
        ("NUMBER_DEVICES", "abc", 'invalid NUMBER_DEVICES "abc": must be a non-negative integer'),
        ("NUMBER_DEVICES", "-1", 'invalid NUMBER_DEVICES "-1": must be a non-negative integer'),
        ("NUMBER_DEVICES", "1.5", 'invalid NUMBER_DEVICES "1.5": must be a non-negative integer'),
        ("NUMBER_DEVICES", " 2", 'invalid NUMBER_DEVICES " 2": must be a non-negative integer'),
        ("NUMBER_DEVICES", "", 'invalid NUMBER_DEVICES "": must be a non-negative integer'),
        ("NUMBER_DEVICES", str(MAX_DEVICES + 1), f"must be at most {MAX_DEVICES}"),
        ("RESOURCE_NAME", "simple-device", "must be <domain>/<name>"),
        ("RESOURCE_NAME", "example.com/a/b", "must be <domain>/<name>"),
        ("RESOURCE_NAME", "example.com/", "name ''"),
        ("RESOURCE_NAME", "Example.com/dev", "not a lowercase DNS subdomain"),
        ("RESOURCE_NAME", "kubernetes.io/dev", "the kubernetes.io domain is reserved"),
        ("RESOURCE_NAME", "foo.kubernetes.io/dev", "the kubernetes.io domain is reserved"),
        ("RESOURCE_NAME", "k8s.io/dev", "the k8s.io domain is reserved"),
        ("RESOURCE_NAME", "a.b.k8s.io/dev", "the k8s.io domain is reserved"),
        ("PLUGIN_NAME", "a/b", "must be a socket file name"),
        ("PLUGIN_NAME", "", "must be a socket file name"),
        ("PLUGIN_NAME", ".hidden", "must be a socket file name"),
        ("PLUGIN_NAME", "..", "must be a socket file name"),
        ("PLUGIN_NAME", "kubelet", "kubelet.sock is the kubelet's own socket"),
        ("PLUGIN_NAME", "p" * 100, "over the 107-byte unix limit"),
        ("NODE_NAME", "Node_1", "must be a node name"),
        ("DEVICE_ID_PREFIX", "", "must be 1-63 letters"),
        ("DEVICE_ID_PREFIX", "a b", "must be 1-63 letters"),
        ("ENV_PREFIX", "1ABC", "must be a shell variable name"),
        ("ENV_PREFIX", "SIMPLE-DEVICE", "must be a shell variable name"),
        ("DEVICE_FILE_PREFIX", "a/b", "must be a file name"),
        ("DEVICE_FILE_PREFIX", "..", "must be a file name"),
        ("DEVICE_FILE_PREFIX", "-x", "must be a file name"),
        ("ANNOTATION_PREFIX", "Bad_Domain.io/dev", "not a lowercase DNS subdomain"),
        ("ANNOTATION_PREFIX", "simdev.io/" + "a" * 62, "annotation key name"),
        ("DEVICE_PLUGIN_DIR", "", "must be a directory path"),
    ],
)
def test_bad_values_name_the_variable(var: str, value: str, expected: str) -> None:
    env = {"NODE_NAME": "n", var: value}
    with pytest.raises(ConfigError) as err:
        load(env)
    message = str(err.value)
    assert message.startswith(f'invalid {var} "{value}"'), message
    assert expected in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("var", "value"),
    [
        ("NUMBER_DEVICES", "0"),
        ("NUMBER_DEVICES", str(MAX_DEVICES)),
        ("RESOURCE_NAME", "kubernetes.io.example.com/dev"),
        ("RESOURCE_NAME", "my-k8s.io/dev"),
        ("ENV_PREFIX", "_X1"),
        ("DEVICE_FILE_PREFIX", "simple.device_0"),
        ("ANNOTATION_PREFIX", "plain-prefix"),
    ],
)
def test_edge_values_that_are_fine(var: str, value: str) -> None:
    load({"NODE_NAME": "n", var: value})


def test_annotation_key_length_counts_the_largest_index() -> None:
    prefix = "x.io/" + "a" * 61  # with "-9" the key name is 63 characters, with "-10" 64
    load({"NODE_NAME": "n", "NUMBER_DEVICES": "10", "ANNOTATION_PREFIX": prefix})
    with pytest.raises(ConfigError, match="ANNOTATION_PREFIX"):
        load({"NODE_NAME": "n", "NUMBER_DEVICES": "11", "ANNOTATION_PREFIX": prefix})


# Topology, allocation policy and sharing.


def test_topology_policy_and_sharing_from_the_environment() -> None:
    cfg = load(
        {
            "NODE_NAME": "n",
            "NUMBER_DEVICES": "8",
            "NUMA_NODES": "2",
            "ALLOCATION_POLICY": "NUMAAligned",
            "SHARING_REPLICAS": "3",
            "SHARING_POLICY": "Packed",
            "FAIL_REQUESTS_GREATER_THAN_ONE": "true",
        }
    )
    assert (cfg.numa_nodes, cfg.allocation_policy, cfg.sharing_replicas) == (2, "NUMAAligned", 3)
    assert (cfg.sharing_policy, cfg.fail_requests_greater_than_one) == ("Packed", True)
    assert cfg.advertised_devices == 24


def test_defaults_are_no_topology_packed_and_no_sharing() -> None:
    cfg = load({"NODE_NAME": "n", "NUMA_NODES": ""})
    assert (cfg.numa_nodes, cfg.allocation_policy, cfg.sharing_replicas) == (None, "Packed", 1)
    assert (cfg.sharing_policy, cfg.fail_requests_greater_than_one) == ("Spread", False)


def test_groups_in_the_file(tmp_path: Path) -> None:
    f = tmp_path / "plugin.yaml"
    f.write_text(
        "topology: {numaNodes: 4}\nallocationPolicy: Spread\n"
        "sharing: {replicas: 2, policy: Packed, failRequestsGreaterThanOne: true}\n"
    )
    cfg = load({"NODE_NAME": "n", "SHARING_REPLICAS": "5"}, f)
    assert (cfg.numa_nodes, cfg.allocation_policy) == (4, "Spread")
    assert (cfg.sharing_replicas, cfg.sharing_policy) == (2, "Packed")
    assert cfg.fail_requests_greater_than_one is True


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("topology: 2\n", 'invalid topology "2" in {f}: must be a mapping'),
        ("topology: {numaNodes: 0}\n", 'invalid topology.numaNodes "0" in {f}: must be an'),
        ("topology: {numaNodes: 65}\n", 'invalid topology.numaNodes "65" in {f}: must be an'),
        ("sharing: {replicas: 0}\n", 'invalid sharing.replicas "0" in {f}: must be an integer'),
        ("sharing: {replicas: true}\n", 'invalid sharing.replicas "True" in {f}: must be a non'),
        ("sharing: {policy: Even}\n", 'invalid sharing.policy "Even" in {f}: must be one of'),
        (
            "sharing: {failRequestsGreaterThanOne: 1}\n",
            'invalid sharing.failRequestsGreaterThanOne "1" in {f}: must be a boolean',
        ),
        ("allocationPolicy: packed\n", 'invalid allocationPolicy "packed" in {f}: must be one of'),
        (
            "numberDevices: 5000\nsharing: {replicas: 3}\n",
            "invalid numberDevices * sharing.replicas in {f}: 5000 * 3 = 15000 devices, "
            "must be at most 10000",
        ),
    ],
)
def test_bad_group_values_name_the_key(tmp_path: Path, content: str, expected: str) -> None:
    f = tmp_path / "plugin.yaml"
    f.write_text(content)
    with pytest.raises(ConfigError) as err:
        load({"NODE_NAME": "n"}, f)
    assert str(err.value).startswith(expected.format(f=f)), str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_group_keys_are_named(tmp_path: Path) -> None:
    f = tmp_path / "plugin.yaml"
    f.write_text("sharing: {replica: 3}\n")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) in --config .*: sharing\.replica "):
        load({"NODE_NAME": "n"}, f)


@pytest.mark.parametrize(
    ("var", "value", "expected"),
    [
        ("NUMA_NODES", "0", "must be an integer from 1 to 64 (unset: no topology)"),
        ("NUMA_NODES", "x", "must be an integer from 1 to 64 (unset: no topology)"),
        ("ALLOCATION_POLICY", "Balanced", "must be one of Packed, Spread, NUMAAligned, None"),
        ("SHARING_REPLICAS", "0", f"must be an integer from 1 to {MAX_DEVICES}"),
        ("SHARING_REPLICAS", str(MAX_DEVICES + 1), f"must be an integer from 1 to {MAX_DEVICES}"),
        ("SHARING_POLICY", "spread", "must be one of Spread, Packed"),
        ("FAIL_REQUESTS_GREATER_THAN_ONE", "yes", "must be true or false"),
    ],
)
def test_bad_new_variables_are_named(var: str, value: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        load({"NODE_NAME": "n", var: value})
    assert str(err.value) == f'invalid {var} "{value}": {expected}'


def test_one_maximum_for_devices_times_replicas() -> None:
    load({"NODE_NAME": "n", "NUMBER_DEVICES": "2500", "SHARING_REPLICAS": "4"})
    load({"NODE_NAME": "n", "NUMBER_DEVICES": "1", "SHARING_REPLICAS": str(MAX_DEVICES)})
    with pytest.raises(ConfigError) as err:
        load({"NODE_NAME": "n", "NUMBER_DEVICES": "2501", "SHARING_REPLICAS": "4"})
    assert str(err.value) == (
        "invalid NUMBER_DEVICES * SHARING_REPLICAS: 2501 * 4 = 10004 devices, must be at most "
        f"{MAX_DEVICES} so the device list fits in one kubelet message"
    )


def test_live_groups_apply_as_a_whole() -> None:
    base = load({"NODE_NAME": "n", "NUMA_NODES": "2", "SHARING_REPLICAS": "3"})
    cfg = with_spec(base, {"topology": {"numaNodes": 4}, "allocationPolicy": "Spread"}, "SD x")
    # sharing is absent from the spec: no sharing, whatever the start-up config said.
    assert (cfg.numa_nodes, cfg.allocation_policy, cfg.sharing_replicas) == (4, "Spread", 1)
    cfg = with_spec(base, {"sharing": {"replicas": 2}}, "SD x")
    assert (cfg.numa_nodes, cfg.sharing_replicas, cfg.sharing_policy) == (None, 2, "Spread")
    with pytest.raises(ConfigError) as err:
        with_spec(base, {"numberDevices": 6000, "sharing": {"replicas": 2}}, "SD x")
    assert str(err.value).startswith(
        "invalid numberDevices * sharing.replicas in SD x: 6000 * 2 = 12000 devices"
    )
    with pytest.raises(ConfigError, match=r'^invalid topology.numaNodes "0" in SD x: '):
        with_spec(base, {"topology": {"numaNodes": 0}}, "SD x")


def test_dra_settings_come_from_the_file(tmp_path: Path) -> None:
    from simdev.plugin.draconfig import DraConfig

    path = tmp_path / "c.yaml"
    path.write_text("dra:\n  enabled: true\n  driverName: gpus.simdev.io\n  cdiDir: /run/cdi\n")
    cfg = load({"NODE_NAME": "n"}, path)
    assert cfg.dra == DraConfig("gpus.simdev.io", cdi_dir=Path("/run/cdi"))
    assert cfg.dra.socket_path == Path("/var/lib/kubelet/plugins/gpus.simdev.io/dra.sock")
    assert cfg.dra.registration_path == Path(
        "/var/lib/kubelet/plugins_registry/gpus.simdev.io-reg.sock"
    )
    # Live changes and pools keep the file's DRA settings: they need a restart.
    assert with_spec(cfg, {"numberDevices": 3}, "SimulatedDevice x").dra == cfg.dra
    path.write_text("dra:\n  enabled: false\n  driverName: gpus.simdev.io\n")
    assert load({"NODE_NAME": "n"}, path).dra is None


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("dra: on", "invalid dra in --config"),
        ("dra:\n  enabled: yes please\n", "invalid dra.enabled"),
        ("dra:\n  enabled: true\n", "invalid dra.driverName None"),
        ("dra:\n  enabled: true\n  driverName: Gpus\n", "invalid dra.driverName 'Gpus'"),
        ("dra:\n  enabled: true\n  driverName: " + "g" * 64, "at most 63 characters"),
        ("dra:\n  enabled: true\n  driverName: g\n  cdiDir: cdi\n", "invalid dra.cdiDir"),
        ("dra:\n  enabled: true\n  driverName: g\n  cdi: /x\n", "unknown key(s) cdi in dra"),
        (
            f"dra:\n  enabled: true\n  driverName: g\n  registryDir: /{'r' * 100}\n",
            "invalid dra.registryDir",
        ),
    ],
)
def test_bad_dra_settings_name_the_key(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        load({"NODE_NAME": "n"}, path)
