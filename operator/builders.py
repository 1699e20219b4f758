"""Pure builders: one SimulatedDevice in, the Kubernetes objects that serve it out, as dicts.

Nothing here talks to the API server, so every rule about what gets deployed is unit-tested
without a cluster. The I/O layer applies the results as they are.
"""

from __future__ import annotations

import hashlib
import ipaddress
from dataclasses import dataclass
from typing import Any

import yaml

from simdev.operator.model import (
    CONFIG_HASH_ANNOTATION,
    CREATED_NAMESPACE_LABEL,
    GROUP,
    MANAGED_BY_LABEL,
    MANAGER,
    OWNER_LABEL,
    PLUGIN_IMAGE_ID_ANNOTATION,
    PLURAL,
    Device,
    child_name,
)
from simdev.operator.observed import FAKE_NODE_LABEL

DEVICE_PLUGIN_DIR = "/var/lib/kubelet/device-plugins"
# The kubelet's DRA folders and the runtime's CDI folder (spec.dra): the plugin's defaults.
DRA_PLUGINS_DIR = "/var/lib/kubelet/plugins"
DRA_REGISTRY_DIR = "/var/lib/kubelet/plugins_registry"
CDI_DIR = "/var/run/cdi"
DRA_MOUNTS = (
    ("dra-plugins", DRA_PLUGINS_DIR),
    ("dra-registry", DRA_REGISTRY_DIR),
    ("cdi", CDI_DIR),
)
CONFIG_DIR = "/etc/simdev"
CONFIG_FILE = "config.yaml"
CONTAINER_NAME = "plugin"

# Privileged is the lowest Pod Security level the plugin pod passes: baseline already
# forbids every hostPath volume (the kubelet's device-plugin directory is one) and host
# networking (plugins on the local cluster); restricted also forbids root, which owns that
# directory. The pod takes no more than that: no capabilities, no privilege escalation, a
# read-only root filesystem and the RuntimeDefault seccomp profile.
PRIVILEGED_NAMESPACE_LABELS = {
    f"pod-security.kubernetes.io/{mode}": "privileged" for mode in ("enforce", "audit", "warn")
}

# A plugin idles between kubelet calls; these keep it schedulable on a full node and stop a
# runaway one from hurting the node.
PLUGIN_RESOURCES = {"requests": {"cpu": "10m", "memory": "48Mi"}, "limits": {"memory": "128Mi"}}


@dataclass(frozen=True)
class PluginRuntime:
    """How plugin pods run on this cluster; from the operator's environment."""

    image: str
    image_id: str = ""
    # On clusters whose pods cannot reach the API server through its Service (the local
    # cluster has no kube-proxy), plugins use the host's network and this address instead.
    host_network: bool = False
    api_host: str = ""
    api_port: str = ""
    # The plugins' metrics port. On the host network every plugin of a node shares one
    # network, so the operator gives each SimulatedDevice its own port from here upwards.
    metrics_port: int = 9500

    @property
    def metrics_address_env(self) -> dict[str, Any]:
        """The METRICS_ADDRESS entry of a plugin container's env."""
        if not self.host_network:
            return {"name": "METRICS_ADDRESS", "value": "0.0.0.0"}
        if _is_loopback(self.api_host):
            # An API server on loopback means every node is this machine, each on its own
            # loopback address (the local cluster): plugins of one object on two nodes
            # share one network and would clash on one address, so each takes its node's.
            host_ip = {"fieldRef": {"fieldPath": "status.hostIP"}}
            return {"name": "METRICS_ADDRESS", "valueFrom": host_ip}
        # Elsewhere on the host's network, loopback only: nothing outside the node should
        # reach it.
        return {"name": "METRICS_ADDRESS", "value": "127.0.0.1"}


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def common_labels(device: Device) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "simdev-plugin",
        "app.kubernetes.io/instance": device.name,
        "app.kubernetes.io/component": "device-plugin",
        "app.kubernetes.io/part-of": "simdev",
        MANAGED_BY_LABEL: MANAGER,
        OWNER_LABEL: device.name,
    }


def selector_labels(device: Device) -> dict[str, str]:
    # Selectors are immutable: they use only what never changes for a given object.
    return {"app.kubernetes.io/name": "simdev-plugin", OWNER_LABEL: device.name}


def namespace(device: Device) -> dict[str, Any]:
    """The target namespace as the operator creates it when it is missing.

    It is owned by (not controlled by) the SimulatedDevice: every SimulatedDevice that deploys
    into it adds its own owner reference, and the garbage collector deletes the namespace
    only once all of them are gone.
    """
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": device.spec.namespace,
            "labels": {
                **PRIVILEGED_NAMESPACE_LABELS,
                MANAGED_BY_LABEL: MANAGER,
                CREATED_NAMESPACE_LABEL: "true",
            },
            "ownerReferences": [device.owner_reference(controller=False)],
        },
    }


def _metadata(device: Device) -> dict[str, Any]:
    return {
        "name": child_name(device.name),
        "namespace": device.spec.namespace,
        "labels": common_labels(device),
        "ownerReferences": [device.owner_reference()],
    }


def service_account(device: Device) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _metadata(device),
        # The token lets the plugin read its own SimulatedDevice and Node, nothing else.
        "automountServiceAccountToken": True,
    }


def plugin_role_name(device: Device) -> str:
    return f"simdev-plugin-{device.name}"


def _cluster_metadata(device: Device) -> dict[str, Any]:
    return {
        "name": plugin_role_name(device),
        "labels": common_labels(device),
        "ownerReferences": [device.owner_reference()],
    }


def plugin_cluster_role(device: Device) -> dict[str, Any]:
    """Read access to this one SimulatedDevice (live changes) and to Nodes (their labels),
    and with DRA to ResourceClaims (RBAC cannot narrow them to the claims of one node).

    Nodes cannot be narrowed to the plugin's own node by RBAC; node labels are not secret.
    """
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRole",
        "metadata": _cluster_metadata(device),
        "rules": [
            {
                "apiGroups": [GROUP],
                "resources": [PLURAL],
                "resourceNames": [device.name],
                "verbs": ["get", "list", "watch"],
            },
            {"apiGroups": [""], "resources": ["nodes"], "verbs": ["get", "list", "watch"]},
            # The DRA plugin reads which devices a claim it prepares was allocated.
            *(
                [
                    {
                        "apiGroups": ["resource.k8s.io"],
                        "resources": ["resourceclaims"],
                        "verbs": ["get"],
                    }
                ]
                if device.spec.dra.enabled
                else []
            ),
        ],
    }


def plugin_cluster_role_binding(device: Device) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "ClusterRoleBinding",
        "metadata": _cluster_metadata(device),
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": plugin_role_name(device),
        },
        "subjects": [
            {
                "kind": "ServiceAccount",
                "name": child_name(device.name),
                "namespace": device.spec.namespace,
            }
        ],
    }


def cluster_objects(device: Device) -> list[dict[str, Any]]:
    """The cluster-scoped objects of one SimulatedDevice: the plugin's read access."""
    return [plugin_cluster_role(device), plugin_cluster_role_binding(device)]


# Settings a running plugin cannot take live: the sockets and the registered names.
RESTART_KEYS = ("resourceName", "pluginName", "devicePluginDir", "simulatedDevice", "dra")


def plugin_config(device: Device) -> dict[str, Any]:
    """The plugin's configuration file (camelCase keys); NODE_NAME comes from the pod.

    The plugin follows its SimulatedDevice for the live keys; this file is what it starts
    with, and what it keeps when the API server cannot be reached.
    """
    spec = device.spec
    config: dict[str, Any] = {
        "resourceName": spec.resource_name,
        "pluginName": spec.plugin_name,
        "numberDevices": spec.number_devices,
        "deviceIdPrefix": spec.device_id_prefix,
        "annotationPrefix": spec.annotation_prefix,
        "envPrefix": spec.env_prefix,
        "deviceFilePrefix": spec.device_file_prefix,
        "devicePluginDir": DEVICE_PLUGIN_DIR,
        "simulatedDevice": device.name,
        "faults": [dict(f) for f in spec.faults],
        "allocationPolicy": spec.allocation_policy,
        "sharing": {
            "replicas": spec.sharing_replicas,
            "policy": spec.sharing_policy,
            "failRequestsGreaterThanOne": spec.fail_requests_greater_than_one,
        },
    }
    # Absent means no topology, to the plugin as in the SimulatedDevice.
    if spec.numa_nodes is not None:
        config["topology"] = {"numaNodes": spec.numa_nodes}
    # Only when there are pools: a plugin image older than pools refuses the key.
    if spec.node_pools:
        config["nodePools"] = [dict(p) for p in spec.node_pools]
    # Likewise: the DRA driver only when enabled.
    if spec.dra.enabled:
        config["dra"] = {"enabled": True, "driverName": spec.dra.driver_name}
    return config


def render_config(device: Device) -> str:
    return yaml.safe_dump(plugin_config(device), sort_keys=True)


def config_hash(device: Device) -> str:
    """A digest of the settings that need a restart: on the pod template, it rolls the pods.

    Live settings (device count, prefixes, faults) are left out: the plugins take those
    without a restart.
    """
    config = plugin_config(device)
    fixed = yaml.safe_dump({k: config[k] for k in RESTART_KEYS if k in config}, sort_keys=True)
    return hashlib.sha256(fixed.encode()).hexdigest()[:16]


def config_map(device: Device) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(device),
        "data": {CONFIG_FILE: render_config(device)},
    }


def _container(device: Device, runtime: PluginRuntime, metrics_port: int) -> dict[str, Any]:
    config_args = ["--config", f"{CONFIG_DIR}/{CONFIG_FILE}"]
    mounts: list[dict[str, Any]] = [
        {"name": "device-plugins", "mountPath": DEVICE_PLUGIN_DIR},
        {"name": "config", "mountPath": CONFIG_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    if device.spec.dra.enabled:
        # The same paths as on the host: the kubelet dials the endpoint the plugin names.
        mounts += [{"name": name, "mountPath": path} for name, path in DRA_MOUNTS]
    env: list[dict[str, Any]] = [
        {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
        {"name": "LOG_FORMAT", "value": "json"},
        runtime.metrics_address_env,
        {"name": "METRICS_PORT", "value": str(metrics_port)},
    ]
    if runtime.api_host:
        env += [
            {"name": "KUBERNETES_SERVICE_HOST", "value": runtime.api_host},
            {"name": "KUBERNETES_SERVICE_PORT", "value": runtime.api_port or "443"},
        ]
    return {
        "name": CONTAINER_NAME,
        "image": device.spec.image or runtime.image,
        "imagePullPolicy": "IfNotPresent",
        "command": ["simdev-plugin"],
        "args": config_args,
        "env": env,
        # On the host network this also claims the port on the node, so two plugins that
        # somehow got one port never land on the same node.
        "ports": [{"name": "metrics", "containerPort": metrics_port}],
        "resources": PLUGIN_RESOURCES,
        # The plugin's own check dials its socket; a stuck server or a lost socket restarts it.
        "livenessProbe": {
            "exec": {"command": ["simdev-plugin", *config_args, "check"]},
            "initialDelaySeconds": 10,
            "periodSeconds": 30,
            "timeoutSeconds": 10,
            "failureThreshold": 3,
        },
        "securityContext": {
            # Root owns the kubelet's socket directory.
            "runAsUser": 0,
            "runAsGroup": 0,
            "runAsNonRoot": False,
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            # Device files are the host's /dev/null under another name in the container,
            # mapped by the runtime: no host /dev and no MKNOD needed.
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": mounts,
    }


def _volumes(device: Device) -> list[dict[str, Any]]:
    volumes: list[dict[str, Any]] = [
        {
            "name": "device-plugins",
            "hostPath": {"path": DEVICE_PLUGIN_DIR, "type": "Directory"},
        },
        {"name": "config", "configMap": {"name": child_name(device.name)}},
        {"name": "tmp", "emptyDir": {"sizeLimit": "16Mi"}},
    ]
    if device.spec.dra.enabled:
        volumes += [
            {"name": name, "hostPath": {"path": path, "type": "DirectoryOrCreate"}}
            for name, path in DRA_MOUNTS
        ]
    return volumes


def pod_annotations(device: Device, default_image_id: str = "") -> dict[str, str]:
    """The pod template's annotations: a change of any of them rolls the plugin pods."""
    annotations = {CONFIG_HASH_ANNOTATION: config_hash(device)}
    # Only the operator's own image is tracked; an image from spec.image is the user's to roll.
    if default_image_id and not device.spec.image:
        annotations[PLUGIN_IMAGE_ID_ANNOTATION] = default_image_id
    return annotations


def daemon_set(
    device: Device, runtime: PluginRuntime, metrics_port: int | None = None
) -> dict[str, Any]:
    spec = device.spec
    pod_spec: dict[str, Any] = {
        "serviceAccountName": child_name(device.name),
        "automountServiceAccountToken": True,
        "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [_container(device, runtime, metrics_port or runtime.metrics_port)],
        "volumes": _volumes(device),
        # The plugin only has to close its socket on SIGTERM.
        "terminationGracePeriodSeconds": 10,
        # Node-pressure eviction would make the node's devices vanish under running pods.
        "priorityClassName": "system-node-critical",
    }
    if runtime.host_network:
        pod_spec["hostNetwork"] = True
        pod_spec["dnsPolicy"] = "Default"
    if spec.node_selector:
        pod_spec["nodeSelector"] = dict(spec.node_selector)
    # Fake nodes have no kubelet to run a plugin; the operator writes their status instead.
    # Node affinity sees only labels, so it goes by KWOK's node label, not its annotation.
    pod_spec["affinity"] = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {
                        "matchExpressions": [
                            {
                                "key": FAKE_NODE_LABEL[0],
                                "operator": "NotIn",
                                "values": [FAKE_NODE_LABEL[1]],
                            }
                        ]
                    }
                ]
            }
        }
    }
    if spec.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in spec.tolerations]
    return {
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": _metadata(device),
        "spec": {
            "selector": {"matchLabels": selector_labels(device)},
            # Two plugins on one node would fight over the same socket: never surge.
            "updateStrategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0},
            },
            "revisionHistoryLimit": 3,
            "template": {
                "metadata": {
                    "labels": common_labels(device),
                    "annotations": pod_annotations(device, runtime.image_id),
                },
                "spec": pod_spec,
            },
        },
    }


def namespaced_objects(
    device: Device, runtime: PluginRuntime, metrics_port: int | None = None
) -> list[dict[str, Any]]:
    """Everything that lives in the target namespace, in the order it must be applied.

    The ConfigMap comes before the DaemonSet so that new pods read the new configuration.
    """
    return [
        service_account(device),
        config_map(device),
        daemon_set(device, runtime, metrics_port),
    ]
