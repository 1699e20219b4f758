"""What the deployed manifests allow and refuse: the operator's rights, the admission
policies, the user roles and the plugin's Pod Security level.

Everything is asked of the API server without side effects where it can be: kubectl auth
can-i, and server-side dry runs, which run every admission policy but store nothing.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest

from clusterlib import PLUGIN_IMAGE, Cluster, wait_for
from simdev.operator import builders
from simdev.operator.model import CREATED_NAMESPACE_LABEL, Device

pytestmark = pytest.mark.e2e

OPERATOR_SA = "system:serviceaccount:simdev-system:simdev-operator"
PARAMS = ("-n", "simdev-system", "configmap", "simdev-admission")
# Any namespace: RBAC answers for namespaces that do not exist, too.
SOME_NAMESPACE = "simdev-e2e-team"

ALLOWED = [
    # kopf: watch, finalizer, annotations, status; get is granted on to the plugins.
    ("get", "simulateddevices.simdev.io"),
    ("list", "simulateddevices.simdev.io"),
    ("watch", "simulateddevices.simdev.io"),
    ("patch", "simulateddevices.simdev.io"),
    ("patch", "simulateddevices.simdev.io", "--subresource=status"),
    # Fake nodes' devices and real nodes' stale keys (docs/cluster-wide.md).
    ("patch", "nodes", "--subresource=status"),
    ("list", "customresourcedefinitions.apiextensions.k8s.io"),
    ("watch", "customresourcedefinitions.apiextensions.k8s.io"),
    # Which namespaces it may patch and delete is the admission policy's to narrow.
    ("get", "namespaces"),
    ("create", "namespaces"),
    ("patch", "namespaces"),
    ("delete", "namespaces"),
    ("create", "serviceaccounts", "-n", SOME_NAMESPACE),
    ("patch", "serviceaccounts", "-n", SOME_NAMESPACE),
    ("delete", "serviceaccounts", "-n", SOME_NAMESPACE),
    ("create", "configmaps", "-n", SOME_NAMESPACE),
    ("patch", "configmaps", "-n", SOME_NAMESPACE),
    ("delete", "configmaps", "-n", SOME_NAMESPACE),
    ("get", "daemonsets.apps", "-n", SOME_NAMESPACE),
    ("list", "daemonsets.apps"),
    ("watch", "daemonsets.apps"),
    ("create", "daemonsets.apps", "-n", SOME_NAMESPACE),
    ("patch", "daemonsets.apps", "-n", SOME_NAMESPACE),
    ("delete", "daemonsets.apps", "-n", SOME_NAMESPACE),
    # Cluster-wide, like every rule of a ClusterRole: the docs say so.
    ("create", "daemonsets.apps", "-n", "kube-system"),
    ("create", "clusterroles.rbac.authorization.k8s.io"),
    ("patch", "clusterroles.rbac.authorization.k8s.io"),
    ("delete", "clusterroles.rbac.authorization.k8s.io"),
    ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
    ("patch", "clusterrolebindings.rbac.authorization.k8s.io"),
    ("delete", "clusterrolebindings.rbac.authorization.k8s.io"),
    ("get", "nodes"),
    ("list", "nodes"),
    ("watch", "nodes"),
    ("list", "pods"),
    ("watch", "pods"),
    ("create", "events", "-n", "default"),
]

REFUSED = [
    # SimulatedDevices are the users' to create and delete.
    ("create", "simulateddevices.simdev.io"),
    ("update", "simulateddevices.simdev.io"),
    ("delete", "simulateddevices.simdev.io"),
    ("update", "simulateddevices.simdev.io", "--subresource=status"),
    ("get", "customresourcedefinitions.apiextensions.k8s.io"),
    ("create", "customresourcedefinitions.apiextensions.k8s.io"),
    ("patch", "customresourcedefinitions.apiextensions.k8s.io"),
    ("list", "namespaces"),
    ("update", "namespaces"),
    ("update", "namespaces", "--subresource=finalize"),
    ("get", "secrets", "-n", SOME_NAMESPACE),
    ("list", "secrets"),
    ("create", "secrets", "-n", SOME_NAMESPACE),
    ("get", "configmaps", "-n", SOME_NAMESPACE),
    ("list", "configmaps"),
    ("get", "serviceaccounts", "-n", SOME_NAMESPACE),
    ("create", "serviceaccounts", "--subresource=token", "-n", SOME_NAMESPACE),
    ("update", "daemonsets.apps", "-n", SOME_NAMESPACE),
    ("patch", "daemonsets.apps", "--subresource=status", "-n", SOME_NAMESPACE),
    ("create", "deployments.apps", "-n", SOME_NAMESPACE),
    ("patch", "deployments.apps", "-n", "simdev-system"),
    ("create", "statefulsets.apps", "-n", SOME_NAMESPACE),
    ("create", "jobs.batch", "-n", SOME_NAMESPACE),
    ("get", "clusterroles.rbac.authorization.k8s.io"),
    ("escalate", "clusterroles.rbac.authorization.k8s.io"),
    ("bind", "clusterroles.rbac.authorization.k8s.io"),
    ("create", "roles.rbac.authorization.k8s.io", "-n", SOME_NAMESPACE),
    ("create", "rolebindings.rbac.authorization.k8s.io", "-n", SOME_NAMESPACE),
    ("patch", "nodes"),
    ("update", "nodes"),
    ("delete", "nodes"),
    ("get", "pods", "-n", SOME_NAMESPACE),
    ("create", "pods", "-n", SOME_NAMESPACE),
    ("delete", "pods", "-n", SOME_NAMESPACE),
    ("create", "pods", "--subresource=exec", "-n", SOME_NAMESPACE),
    ("create", "pods", "--subresource=eviction", "-n", SOME_NAMESPACE),
    ("patch", "events", "-n", "default"),
    ("create", "persistentvolumes"),
    ("create", "certificatesigningrequests.certificates.k8s.io"),
    # It cannot lift the policies that guard it.
    ("patch", "validatingadmissionpolicies.admissionregistration.k8s.io"),
    ("delete", "validatingadmissionpolicybindings.admissionregistration.k8s.io"),
    ("create", "mutatingwebhookconfigurations.admissionregistration.k8s.io"),
    ("impersonate", "users"),
    ("impersonate", "serviceaccounts"),
    ("*", "*"),
]


def can_i(cluster: Cluster, user: str, verb: str, resource: str, *flags: str) -> bool:
    proc = cluster.kubectl("auth", "can-i", f"--as={user}", verb, resource, *flags, check=False)
    answer = proc.stdout.strip()
    assert answer in ("yes", "no"), f"can-i {verb} {resource} {flags}: {proc.stderr}"
    return answer == "yes"


def _id(case: tuple[str, ...]) -> str:
    return " ".join(case)


@pytest.mark.parametrize("case", ALLOWED, ids=_id)
def test_the_operator_can(operator: Cluster, case: tuple[str, ...]) -> None:
    assert can_i(operator, OPERATOR_SA, *case), f"the operator cannot {_id(case)}"


@pytest.mark.parametrize("case", REFUSED, ids=_id)
def test_the_operator_cannot(operator: Cluster, case: tuple[str, ...]) -> None:
    assert not can_i(operator, OPERATOR_SA, *case), f"the operator can {_id(case)}"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


def device(name: str = "e2e-admission-probe", **spec: Any) -> str:
    return json.dumps(
        {
            "apiVersion": "simdev.io/v1alpha1",
            "kind": "SimulatedDevice",
            "metadata": {"name": name},
            "spec": spec,
        }
    )


def dry_run(cluster: Cluster, body: str, *args: str) -> tuple[int, str]:
    proc = cluster.kubectl(
        "create", "--dry-run=server", "-o", "name", *args, "-f", "-", input=body, check=False
    )
    return proc.returncode, proc.stderr


@pytest.mark.parametrize(
    "namespace", ["kube-system", "kube-public", "kube-node-lease", "default", "simdev-system"]
)
def test_reserved_namespaces_are_refused(operator: Cluster, namespace: str) -> None:
    code, err = dry_run(operator, device(namespace=namespace))
    assert code != 0, f"a SimulatedDevice in {namespace} was admitted"
    assert "simdev-simulateddevices" in err, err
    assert f"spec.namespace: {namespace} is reserved" in err, err


@pytest.mark.parametrize(
    "image",
    [
        "docker.io/library/busybox:1.36",
        "localhost/simdev-plugin-evil:1",
        "localhost/simdev-plugin/evil:1",
        "localhost/other:1",
    ],
)
def test_images_outside_the_allow_list_are_refused(operator: Cluster, image: str) -> None:
    code, err = dry_run(operator, device(image=image))
    assert code != 0, f"{image} was admitted"
    assert f"spec.image: {image} is not from an allowed repository" in err, err


@pytest.mark.parametrize(
    "spec",
    [
        pytest.param({}, id="defaults"),
        # The namespaces and image the e2e suite, samples and benchmarks use.
        pytest.param({"namespace": "simdev-e2e"}, id="shared-e2e-namespace"),
        pytest.param({"namespace": "simdev-live-e2e"}, id="live-e2e-namespace"),
        pytest.param({"namespace": "simdev-samples"}, id="samples-namespace"),
        pytest.param({"namespace": "e2e-undeploy-0a1b2c"}, id="per-test-namespace"),
        pytest.param({"image": PLUGIN_IMAGE}, id="the-plugin-image"),
        pytest.param({"image": "localhost/simdev-plugin@sha256:" + "0" * 64}, id="by-digest"),
    ],
)
def test_the_projects_own_devices_are_admitted(operator: Cluster, spec: dict[str, Any]) -> None:
    code, err = dry_run(operator, device(**spec))
    assert code == 0, err


def test_the_lists_come_from_the_configmap(operator: Cluster) -> None:
    namespace = unique("e2e-denied")
    original = operator.get_json(*PARAMS)["data"]
    changed = {
        "deniedNamespaces": f"{original['deniedNamespaces']}, {namespace}",
        "allowedImages": f"{original['allowedImages']}, registry.example.com/simdev/",
    }
    operator.kubectl("patch", *PARAMS, "--type=merge", "-p", json.dumps({"data": changed}))
    try:
        # The policy reads its parameters through an informer: give it a moment.
        wait_for(
            f"{namespace} to be refused",
            lambda: (
                f"spec.namespace: {namespace} is reserved"
                in dry_run(operator, device(namespace=namespace))[1]
            ),
            timeout=30,
        )
        code, err = dry_run(operator, device(image="registry.example.com/simdev/gpu:2"))
        assert code == 0, err
    finally:
        operator.kubectl("patch", *PARAMS, "--type=merge", "-p", json.dumps({"data": original}))
    wait_for(
        f"{namespace} to be admitted again",
        lambda: dry_run(operator, device(namespace=namespace))[0] == 0,
        timeout=30,
    )


@pytest.fixture
def namespaces(operator: Cluster) -> Iterator[dict[str, str]]:
    """A team's namespace and one labelled as the operator's own; deleted afterwards."""
    made = {"foreign": unique("e2e-foreign"), "ours": unique("e2e-ours")}
    for kind, name in made.items():
        labels = {CREATED_NAMESPACE_LABEL: "true"} if kind == "ours" else {}
        operator.apply(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": name, "labels": labels},
                }
            )
        )
    yield made
    operator.kubectl("delete", "namespace", *made.values(), "--wait=false", "--ignore-not-found")


def as_operator(cluster: Cluster, *args: str) -> tuple[int, str]:
    proc = cluster.kubectl(f"--as={OPERATOR_SA}", *args, "--dry-run=server", check=False)
    return proc.returncode, proc.stderr


@pytest.mark.parametrize("which", ["foreign", "kube-system", "simdev-system", "default"])
def test_the_operator_leaves_other_namespaces_alone(
    operator: Cluster, namespaces: dict[str, str], which: str
) -> None:
    name = namespaces.get(which, which)
    code, err = as_operator(operator, "annotate", "namespace", name, "simdev.io/probe=1")
    assert code != 0, f"the operator could change namespace {name}"
    assert f"namespace {name}: the simdev operator may only change namespaces it created" in err
    code, err = as_operator(operator, "delete", "namespace", name)
    assert code != 0, f"the operator could delete namespace {name}"
    # The API server itself never lets anyone delete kube-system or default; its own check
    # answers before any admission policy is asked.
    immortal = "this namespace may not be deleted"
    ours = f"namespace {name}: the simdev operator may only delete namespaces it created"
    assert ours in err or (which in ("kube-system", "default") and immortal in err), err


def test_the_operator_changes_and_deletes_its_own_namespaces(
    operator: Cluster, namespaces: dict[str, str]
) -> None:
    ours = namespaces["ours"]
    code, err = as_operator(operator, "annotate", "namespace", ours, "simdev.io/probe=1")
    assert code == 0, err
    code, err = as_operator(operator, "delete", "namespace", ours)
    assert code == 0, err
    # Dropping the label would turn it into a namespace the operator seems not to own.
    code, err = as_operator(operator, "label", "namespace", ours, f"{CREATED_NAMESPACE_LABEL}-")
    assert code != 0
    assert "may not remove the label" in err, err


def test_other_users_are_not_restricted_by_the_namespace_policy(
    operator: Cluster, namespaces: dict[str, str]
) -> None:
    code, err = dry_run_annotate(operator, namespaces["foreign"])
    assert code == 0, err


def dry_run_annotate(cluster: Cluster, namespace: str) -> tuple[int, str]:
    proc = cluster.kubectl(
        "annotate", "namespace", namespace, "simdev.io/probe=1", "--dry-run=server", check=False
    )
    return proc.returncode, proc.stderr


@pytest.fixture
def users(operator: Cluster) -> Iterator[dict[str, str]]:
    """Users bound cluster-wide to the built-in view and edit roles; unbound afterwards."""
    made = {role: unique(f"e2e-simdev-{role}") for role in ("view", "edit")}
    for role, user in made.items():
        operator.kubectl(
            "create", "clusterrolebinding", user, f"--clusterrole={role}", f"--user={user}"
        )
    yield made
    operator.kubectl("delete", "clusterrolebinding", *made.values(), "--ignore-not-found")


READ = ["get", "list", "watch"]
WRITE = ["create", "update", "patch", "delete"]


def test_view_reads_simulated_devices_and_edit_writes_them(
    operator: Cluster, users: dict[str, str]
) -> None:
    resource = "simulateddevices.simdev.io"
    viewer, editor = users["view"], users["edit"]
    # The aggregation controller fills view and edit in shortly after the roles appear.
    wait_for(
        "simdev-editor to be aggregated into edit",
        lambda: can_i(operator, editor, "create", resource),
        timeout=60,
    )
    wait_for(
        "simdev-viewer to be aggregated into view",
        lambda: can_i(operator, viewer, "get", resource),
        timeout=60,
    )
    for verb in READ:
        assert can_i(operator, viewer, verb, resource), verb
        assert can_i(operator, viewer, verb, resource, "--subresource=status"), verb
        assert can_i(operator, editor, verb, resource), verb
    for verb in WRITE:
        assert not can_i(operator, viewer, verb, resource), verb
        assert can_i(operator, editor, verb, resource), verb
    # The status is the operator's alone.
    for verb in ("update", "patch"):
        assert not can_i(operator, editor, verb, resource, "--subresource=status"), verb


def plugin_pod(namespace: str, host_network: bool) -> str:
    """The plugin DaemonSet's pod as the operator builds it, as a bare Pod."""
    body = {
        "apiVersion": "simdev.io/v1alpha1",
        "kind": "SimulatedDevice",
        "metadata": {"name": "psa-probe", "uid": "uid-psa-probe"},
        "spec": {},
    }
    runtime = builders.PluginRuntime(image=PLUGIN_IMAGE, host_network=host_network)
    template = builders.daemon_set(Device.from_body(body), runtime)["spec"]["template"]
    # The namespace's default service account: the plugin's own does not exist here.
    spec = {**template["spec"], "serviceAccountName": "default"}
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "psa-probe", "namespace": namespace},
            "spec": spec,
        }
    )


@pytest.fixture
def levelled(cluster: Cluster) -> Iterator[dict[str, str]]:
    """One namespace per Pod Security level, enforced."""
    made = {level: unique(f"e2e-psa-{level}") for level in ("baseline", "privileged")}
    for level, name in made.items():
        labels = {"pod-security.kubernetes.io/enforce": level}
        cluster.apply(
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Namespace",
                    "metadata": {"name": name, "labels": labels},
                }
            )
        )

    def has_default_account(namespace: str) -> bool:
        get = cluster.kubectl("-n", namespace, "get", "serviceaccount", "default", check=False)
        return get.returncode == 0

    for name in made.values():
        # Pods are refused until the controller manager has made the default service account.
        wait_for(
            f"the default service account of {name}",
            partial(has_default_account, name),
            timeout=60,
        )
    yield made
    cluster.kubectl("delete", "namespace", *made.values(), "--wait=false", "--ignore-not-found")


@pytest.mark.parametrize("host_network", [False, True], ids=["pod-network", "host-network"])
def test_privileged_is_the_lowest_level_the_plugin_passes(
    cluster: Cluster, levelled: dict[str, str], host_network: bool
) -> None:
    """If baseline ever admits the plugin pod, lower the level its namespaces get."""
    code, err = dry_run(cluster, plugin_pod(levelled["privileged"], host_network))
    assert code == 0, err
    code, err = dry_run(cluster, plugin_pod(levelled["baseline"], host_network))
    assert code != 0, "baseline admits the plugin pod: lower PRIVILEGED_NAMESPACE_LABELS"
    assert 'hostPath volumes (volume "device-plugins")' in err, err
    if host_network:
        assert "hostNetwork=true" in err, err
    assert (
        builders.PRIVILEGED_NAMESPACE_LABELS["pod-security.kubernetes.io/enforce"] == "privileged"
    )
