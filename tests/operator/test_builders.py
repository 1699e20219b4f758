"""The pure builders: one SimulatedDevice in, the objects that serve it out."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from simdev.operator import builders
from simdev.operator.builders import PluginRuntime
from simdev.operator.model import (
    CONFIG_HASH_ANNOTATION,
    CREATED_NAMESPACE_LABEL,
    DEFAULT_NAMESPACE,
    OWNER_LABEL,
    PLUGIN_IMAGE_ID_ANNOTATION,
    Device,
)
from simdev.plugin.config import for_node, load

DeviceFactory = Callable[..., Device]
IMAGE = "localhost/simdev-plugin:0.1.0"
IMAGE_ID = "42d07835dae34558b3b3345fa3298390"


def _container(ds: dict[str, Any]) -> dict[str, Any]:
    containers = ds["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    result: dict[str, Any] = containers[0]
    return result


def _annotations(ds: dict[str, Any]) -> dict[str, str]:
    annotations: dict[str, str] = ds["spec"]["template"]["metadata"]["annotations"]
    return annotations


def _mounts(ds: dict[str, Any]) -> dict[str, str]:
    return {m["name"]: m["mountPath"] for m in _container(ds)["volumeMounts"]}


def _host_paths(ds: dict[str, Any]) -> dict[str, str]:
    volumes = ds["spec"]["template"]["spec"]["volumes"]
    return {v["name"]: v["hostPath"]["path"] for v in volumes if "hostPath" in v}


def test_defaults_resolve_like_the_schema(device: DeviceFactory) -> None:
    spec = device("gpu-sim").spec
    assert spec.namespace == DEFAULT_NAMESPACE
    assert spec.plugin_name == "gpu-sim"  # the object's name, computed by the operator
    assert spec.resource_name == "example.com/simple-device"
    assert spec.number_devices == 2
    assert spec.device_id_prefix == "simple-device"
    assert (spec.annotation_prefix, spec.env_prefix, spec.device_file_prefix) == ("", "", "")
    assert spec.image is None


def test_zero_devices_is_not_replaced_by_the_default(device: DeviceFactory) -> None:
    assert device(numberDevices=0).spec.number_devices == 0


def test_children_share_one_deterministic_name_in_the_target_namespace(
    device: DeviceFactory,
) -> None:
    d = device("sample", namespace="plugins")
    objects = builders.namespaced_objects(d, PluginRuntime(IMAGE))
    assert [o["kind"] for o in objects] == ["ServiceAccount", "ConfigMap", "DaemonSet"]
    for obj in objects:
        assert obj["metadata"]["name"] == "simdev-sample"
        assert obj["metadata"]["namespace"] == "plugins"
        assert obj["metadata"]["labels"][OWNER_LABEL] == "sample"
        (owner,) = obj["metadata"]["ownerReferences"]
        assert owner["uid"] == d.uid
        assert owner["controller"] is True
    # Building twice gives the very same objects: a restart applies, never duplicates.
    assert builders.namespaced_objects(d, PluginRuntime(IMAGE)) == objects


def test_namespace_is_privileged_marked_as_ours_and_co_owned(device: DeviceFactory) -> None:
    d = device("sample", namespace="plugins")
    ns = builders.namespace(d)
    labels = ns["metadata"]["labels"]
    assert ns["metadata"]["name"] == "plugins"
    assert labels["pod-security.kubernetes.io/enforce"] == "privileged"
    assert labels[CREATED_NAMESPACE_LABEL] == "true"
    (owner,) = ns["metadata"]["ownerReferences"]
    # Not a controller reference: several SimulatedDevices may own one namespace.
    assert owner == {**d.owner_reference(), "controller": False}


def test_daemon_set_runs_the_plugin_with_node_name_and_config(device: DeviceFactory) -> None:
    d = device("sample", numberDevices=3)
    ds = builders.daemon_set(d, PluginRuntime(IMAGE))
    container = _container(ds)
    pod = ds["spec"]["template"]["spec"]
    assert container["image"] == IMAGE
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["command"] == ["simdev-plugin"]
    assert container["args"] == ["--config", "/etc/simdev/config.yaml"]
    probe = container["livenessProbe"]["exec"]["command"]
    assert probe == ["simdev-plugin", "--config", "/etc/simdev/config.yaml", "check"]
    env = {e["name"]: e for e in container["env"]}
    assert env["NODE_NAME"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert pod["serviceAccountName"] == "simdev-sample"
    # The token lets the plugin follow its own object; RBAC allows nothing more.
    assert pod["automountServiceAccountToken"] is True
    assert "hostNetwork" not in pod
    assert pod["priorityClassName"] == "system-node-critical"
    assert _mounts(ds)["device-plugins"] == "/var/lib/kubelet/device-plugins"
    assert _host_paths(ds) == {"device-plugins": "/var/lib/kubelet/device-plugins"}
    config_volume = next(v for v in pod["volumes"] if v["name"] == "config")
    assert config_volume["configMap"]["name"] == "simdev-sample"
    assert container["resources"]["requests"]["cpu"]
    assert container["resources"]["limits"]["memory"]
    assert (
        ds["spec"]["selector"]["matchLabels"].items()
        <= ds["spec"]["template"]["metadata"]["labels"].items()
    )
    assert ds["spec"]["updateStrategy"]["rollingUpdate"]["maxSurge"] == 0


def test_plugin_is_locked_down_without_device_files(device: DeviceFactory) -> None:
    security = _container(builders.daemon_set(device(), PluginRuntime(IMAGE)))["securityContext"]
    assert security["runAsUser"] == 0
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}


def test_device_files_need_no_host_dev_and_no_capability(device: DeviceFactory) -> None:
    ds = builders.daemon_set(device(deviceFilePrefix="simdev"), PluginRuntime(IMAGE))
    assert _container(ds)["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert _host_paths(ds) == {"device-plugins": "/var/lib/kubelet/device-plugins"}


def test_local_runtime_puts_plugins_on_the_host_network(device: DeviceFactory) -> None:
    runtime = PluginRuntime(IMAGE, host_network=True, api_host="127.0.0.1", api_port="6443")
    ds = builders.daemon_set(device(), runtime)
    pod = ds["spec"]["template"]["spec"]
    assert (pod["hostNetwork"], pod["dnsPolicy"]) == (True, "Default")
    env = {e["name"]: e.get("value") for e in _container(ds)["env"]}
    assert env["KUBERNETES_SERVICE_HOST"] == "127.0.0.1"
    assert env["KUBERNETES_SERVICE_PORT"] == "6443"
    # Every node is this machine, on its own loopback address: metrics on the node's
    # address, on the port the reconciler handed out.
    ds = builders.daemon_set(device(), runtime, metrics_port=9507)
    env_list = _container(ds)["env"]
    env = {e["name"]: e.get("value") for e in env_list}
    assert env["METRICS_PORT"] == "9507"
    (address,) = [e for e in env_list if e["name"] == "METRICS_ADDRESS"]
    assert address == {
        "name": "METRICS_ADDRESS",
        "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}},
    }
    assert _container(ds)["ports"] == [{"name": "metrics", "containerPort": 9507}]
    plain = _container(builders.daemon_set(device(), PluginRuntime(IMAGE)))
    assert {e["name"]: e.get("value") for e in plain["env"]}["METRICS_ADDRESS"] == "0.0.0.0"
    assert plain["ports"] == [{"name": "metrics", "containerPort": 9500}]


def test_host_network_elsewhere_keeps_metrics_on_loopback(device: DeviceFactory) -> None:
    for api_host in ("", "10.0.0.5", "api.example.com"):
        runtime = PluginRuntime(IMAGE, host_network=True, api_host=api_host)
        env = {
            e["name"]: e.get("value")
            for e in _container(builders.daemon_set(device(), runtime))["env"]
        }
        assert env["METRICS_ADDRESS"] == "127.0.0.1", api_host


def test_plugin_may_read_only_its_own_object_and_nodes(device: DeviceFactory) -> None:
    d = device("sample", namespace="plugins")
    role, binding = builders.cluster_objects(d)
    assert role["kind"] == "ClusterRole" and binding["kind"] == "ClusterRoleBinding"
    assert role["rules"] == [
        {
            "apiGroups": ["simdev.io"],
            "resources": ["simulateddevices"],
            "resourceNames": ["sample"],
            "verbs": ["get", "list", "watch"],
        },
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]},
    ]
    assert binding["roleRef"]["name"] == role["metadata"]["name"] == "simdev-plugin-sample"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "simdev-sample", "namespace": "plugins"}
    ]
    for obj in (role, binding):
        assert "namespace" not in obj["metadata"]
        (owner,) = obj["metadata"]["ownerReferences"]
        assert owner["uid"] == d.uid


def test_with_dra_the_plugin_may_also_read_resource_claims(device: DeviceFactory) -> None:
    plain_role, _ = builders.cluster_objects(device("sample"))
    role, _ = builders.cluster_objects(device("sample", dra={"enabled": True}))
    assert role["rules"] == [
        *plain_role["rules"],
        {"apiGroups": ["resource.k8s.io"], "resources": ["resourceclaims"], "verbs": ["get"]},
    ]


def test_node_selector_tolerations_and_image_override(device: DeviceFactory) -> None:
    toleration = {"key": "simdev", "operator": "Exists", "effect": "NoSchedule"}
    d = device(
        nodeSelector={"disk": "ssd", "zone": "a"},
        tolerations=[toleration],
        image="localhost/other:1",
    )
    ds = builders.daemon_set(d, PluginRuntime(IMAGE))
    pod = ds["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"disk": "ssd", "zone": "a"}
    assert pod["tolerations"] == [toleration]
    assert _container(ds)["image"] == "localhost/other:1"
    plain = builders.daemon_set(device(), PluginRuntime(IMAGE))["spec"]["template"]["spec"]
    assert "nodeSelector" not in plain and "tolerations" not in plain


def test_config_map_holds_the_plugin_config_in_camel_case(device: DeviceFactory) -> None:
    d = device(
        "sample",
        resourceName="example.com/fpga",
        pluginName="fpga",
        numberDevices=4,
        deviceIdPrefix="fpga",
        annotationPrefix="example.com/fpga",
        envPrefix="FPGA",
    )
    data = builders.config_map(d)["data"]
    assert yaml.safe_load(data["config.yaml"]) == {
        "resourceName": "example.com/fpga",
        "pluginName": "fpga",
        "numberDevices": 4,
        "deviceIdPrefix": "fpga",
        "annotationPrefix": "example.com/fpga",
        "envPrefix": "FPGA",
        "deviceFilePrefix": "",
        "devicePluginDir": "/var/lib/kubelet/device-plugins",
        "simulatedDevice": "sample",
        "faults": [],
        "allocationPolicy": "Packed",
        "sharing": {"replicas": 1, "policy": "Spread", "failRequestsGreaterThanOne": False},
    }


def test_config_map_carries_topology_policy_and_sharing(device: DeviceFactory) -> None:
    d = device(
        numberDevices=8,
        topology={"numaNodes": 2},
        allocationPolicy="NUMAAligned",
        sharing={"replicas": 3, "policy": "Packed", "failRequestsGreaterThanOne": True},
    )
    config = builders.plugin_config(d)
    assert config["topology"] == {"numaNodes": 2}
    assert config["allocationPolicy"] == "NUMAAligned"
    assert config["sharing"] == {
        "replicas": 3,
        "policy": "Packed",
        "failRequestsGreaterThanOne": True,
    }
    assert d.spec.advertised_devices == 24


def test_the_plugin_reads_the_config_the_operator_writes(
    device: DeviceFactory, tmp_path: Path
) -> None:
    d = device(
        numberDevices=8,
        topology={"numaNodes": 2},
        allocationPolicy="Spread",
        sharing={"replicas": 3, "policy": "Packed", "failRequestsGreaterThanOne": True},
    )
    f = tmp_path / "config.yaml"
    f.write_text(builders.render_config(d))
    cfg = load({"NODE_NAME": "node-a"}, f)
    assert (cfg.numa_nodes, cfg.allocation_policy, cfg.sharing_replicas) == (2, "Spread", 3)
    assert (cfg.sharing_policy, cfg.fail_requests_greater_than_one) == ("Packed", True)
    plain = tmp_path / "plain.yaml"
    plain.write_text(builders.render_config(device()))
    assert load({"NODE_NAME": "node-a"}, plain).numa_nodes is None


def test_config_map_carries_node_pools_the_plugin_reads(
    device: DeviceFactory, tmp_path: Path
) -> None:
    pools = [{"name": "big", "nodeSelector": {"size": "big"}, "sharing": {"replicas": 2}}]
    d = device(numberDevices=3, nodePools=pools)
    assert builders.plugin_config(d)["nodePools"] == pools
    # Without pools the key stays out: plugin images from before pools would refuse it.
    assert "nodePools" not in builders.plugin_config(device())
    f = tmp_path / "config.yaml"
    f.write_text(builders.render_config(d))
    cfg = load({"NODE_NAME": "node-a"}, f)
    assert [p.name for p in cfg.node_pools] == ["big"]
    assert for_node(cfg, {"size": "big"}).advertised_devices == 6


def test_config_hash_rolls_pods_only_for_what_plugins_cannot_take_live(
    device: DeviceFactory,
) -> None:
    def template_hash(d: Device) -> str:
        annotations = builders.daemon_set(d, PluginRuntime(IMAGE))["spec"]["template"]["metadata"][
            "annotations"
        ]
        value: str = annotations[CONFIG_HASH_ANNOTATION]
        return value

    base = template_hash(device(numberDevices=2))
    assert template_hash(device(numberDevices=2)) == base
    # Live settings reach running plugins through the API: no new pods.
    fault = {"name": "f", "type": "Unhealthy"}
    for live in (
        {"numberDevices": 3},
        {"envPrefix": "X"},
        {"deviceIdPrefix": "x"},
        {"annotationPrefix": "x.io/y"},
        {"deviceFilePrefix": "x"},
        {"faults": [fault]},
        {"nodePools": [{"name": "p", "nodeSelector": {"a": "b"}, "numberDevices": 1}]},
    ):
        assert template_hash(device(**live)) == base, live
    assert template_hash(device(pluginName="other")) != base
    # The DRA driver's sockets and name are fixed for the life of a plugin.
    assert template_hash(device(dra={"enabled": True})) != base
    assert template_hash(device(dra={"enabled": False})) == base
    # The node selector is part of the pod template anyway; it does not touch the config.
    assert template_hash(device(nodeSelector={"a": "b"})) == base


def test_the_default_image_id_is_on_the_pod_template(device: DeviceFactory) -> None:
    ds = builders.daemon_set(device(), PluginRuntime(IMAGE, IMAGE_ID))
    assert _container(ds)["image"] == IMAGE
    assert _annotations(ds)[PLUGIN_IMAGE_ID_ANNOTATION] == IMAGE_ID
    (*_, passed_on) = builders.namespaced_objects(device(), PluginRuntime(IMAGE, IMAGE_ID))
    assert passed_on == ds


def test_an_image_override_is_not_tied_to_the_default_image_id(device: DeviceFactory) -> None:
    d = device(image="localhost/other:1")
    ds = builders.daemon_set(d, PluginRuntime(IMAGE, IMAGE_ID))
    assert PLUGIN_IMAGE_ID_ANNOTATION not in _annotations(ds)
    # A rebuilt default image leaves the user's pods alone.
    assert builders.daemon_set(d, PluginRuntime(IMAGE, "0123456789abcdef")) == ds


def test_a_new_image_id_changes_the_pod_template_and_the_same_one_nothing(
    device: DeviceFactory,
) -> None:
    before = builders.daemon_set(device(), PluginRuntime(IMAGE, IMAGE_ID))
    # A restarted operator with the same image ID builds the very same DaemonSet: no roll.
    assert builders.daemon_set(device(), PluginRuntime(IMAGE, IMAGE_ID)) == before
    after = builders.daemon_set(device(), PluginRuntime(IMAGE, "0123456789abcdef"))
    assert after["spec"]["template"] != before["spec"]["template"]
    assert _annotations(after)[PLUGIN_IMAGE_ID_ANNOTATION] == "0123456789abcdef"
    # Only the annotation differs: the rest of the pod template is untouched.
    del _annotations(before)[PLUGIN_IMAGE_ID_ANNOTATION]
    del _annotations(after)[PLUGIN_IMAGE_ID_ANNOTATION]
    assert after == before


def test_an_unknown_image_id_adds_no_annotation(device: DeviceFactory) -> None:
    for ds in (
        builders.daemon_set(device(), PluginRuntime(IMAGE)),
        builders.daemon_set(device(), PluginRuntime(IMAGE, "")),
    ):
        assert set(_annotations(ds)) == {CONFIG_HASH_ANNOTATION}


SAMPLES = Path(__file__).resolve().parents[2] / "manifests" / "samples"


def test_every_sample_makes_a_config_the_plugin_accepts(tmp_path: Path) -> None:
    for sample in sorted(SAMPLES.glob("*.yaml")):
        body = yaml.safe_load(sample.read_text())
        if body["kind"] != "SimulatedDevice":
            continue
        f = tmp_path / f"{sample.stem}.yaml"
        f.write_text(builders.render_config(Device.from_body(body)))
        load({"NODE_NAME": "node-a"}, f)
    numa = Device.from_body(yaml.safe_load((SAMPLES / "simulateddevice-numa-gpu.yaml").read_text()))
    assert (numa.spec.numa_nodes, numa.spec.advertised_devices) == (2, 24)


def test_with_dra_the_plugin_serves_the_driver_from_the_kubelet_folders(
    device: DeviceFactory, tmp_path: Path
) -> None:
    d = device("gpus", dra={"enabled": True, "attributes": {"model": {"string": "x"}}})
    assert builders.plugin_config(d)["dra"] == {"enabled": True, "driverName": "gpus.simdev.io"}
    f = tmp_path / "config.yaml"
    f.write_text(builders.render_config(d))
    cfg = load({"NODE_NAME": "node-a"}, f)
    assert cfg.dra is not None and cfg.dra.driver_name == "gpus.simdev.io"
    pod = builders.daemon_set(d, PluginRuntime(IMAGE))["spec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    volumes = {v["name"]: v.get("hostPath", {}).get("path") for v in pod["volumes"]}
    for name, path in (
        ("dra-plugins", "/var/lib/kubelet/plugins"),
        ("dra-registry", "/var/lib/kubelet/plugins_registry"),
        ("cdi", "/var/run/cdi"),
    ):
        assert mounts[name] == volumes[name] == path
    # The paths in the pod are the plugin's own defaults, so the file needs none of them.
    assert (cfg.dra.plugins_dir, cfg.dra.registry_dir, cfg.dra.cdi_dir) == (
        Path(mounts["dra-plugins"]),
        Path(mounts["dra-registry"]),
        Path(mounts["cdi"]),
    )
    plain = builders.daemon_set(device("gpus"), PluginRuntime(IMAGE))["spec"]["template"]["spec"]
    assert "cdi" not in {v["name"] for v in plain["volumes"]}
    assert "dra" not in builders.plugin_config(device("gpus"))


def test_no_plugin_lands_on_a_fake_node(device: DeviceFactory) -> None:
    ds = builders.daemon_set(device(nodeSelector={"gpu": "yes"}), PluginRuntime(IMAGE))
    pod = ds["spec"]["template"]["spec"]
    (term,) = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"
    ]
    assert term == {"matchExpressions": [{"key": "type", "operator": "NotIn", "values": ["kwok"]}]}
    # The user's selector still applies beside it.
    assert pod["nodeSelector"] == {"gpu": "yes"}
