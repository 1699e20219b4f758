"""cluster/lib/kwok.sh's pure parts: the fake nodes it writes and the ones it deletes.

kubectl is replaced by a shell function that lists nodes, so nothing needs a cluster.
"""

from __future__ import annotations

import ipaddress
import subprocess
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
EXISTING = ["kwok-node-0", "kwok-node-1", "kwok-node-5", "kwok-node-12", "kwok-extra"]


def bash(script: str) -> subprocess.CompletedProcess[str]:
    listed = " ".join(EXISTING)
    prelude = (
        ". cluster/lib/common.sh; . cluster/lib/kwok.sh; "
        f"kubectl_admin() {{ printf 'node/%s\\n' {listed}; }}; "
    )
    return subprocess.run(
        ["bash", "-c", prelude + script], cwd=REPO, text=True, capture_output=True, timeout=30
    )


def test_nodes_past_the_count_are_the_extra_ones() -> None:
    out = bash("kwok_extra_nodes 2")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["kwok-node-5", "kwok-node-12", "kwok-extra"]
    assert bash("kwok_extra_nodes 13").stdout.split() == ["kwok-extra"]


def test_fake_nodes_are_marked_tainted_and_on_loopback() -> None:
    out = bash("kwok_nodes_yaml 3 4")
    assert out.returncode == 0, out.stderr
    items = yaml.safe_load(out.stdout)["items"]
    assert [n["metadata"]["name"] for n in items] == ["kwok-node-3", "kwok-node-4"]
    for node in items:
        assert node["metadata"]["labels"]["type"] == "kwok"
        assert node["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"
        assert node["spec"]["taints"][0]["effect"] == "NoSchedule"
        for address in node["status"]["addresses"]:
            if address["type"] == "InternalIP":
                assert ipaddress.ip_address(address["address"]).is_loopback


def test_the_pod_range_is_loopback() -> None:
    out = bash('echo "$KWOK_POD_CIDR"')
    network = ipaddress.IPv4Network(out.stdout.strip())
    assert network.subnet_of(ipaddress.IPv4Network("127.0.0.0/8"))


def test_a_count_that_is_not_a_number_is_refused_by_name() -> None:
    out = bash("kwok_up lots")
    assert out.returncode != 0
    assert "KWOK_NODES must be a whole number (got 'lots')" in out.stderr
