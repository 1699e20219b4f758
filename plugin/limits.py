"""Bounds the plugin enforces and the operator's CRD repeats; standard library only.

The operator imports this module (its CRD must say the same numbers, which a unit test
checks), so it must stay free of gRPC and anything else the operator does not install.
"""

from __future__ import annotations

# The kubelet receives a plugin's whole device list in one ListAndWatch message and refuses
# gRPC messages over 4 MiB.
KUBELET_MESSAGE_LIMIT = 4 * 1024 * 1024

# Devices a node advertises: numberDevices * sharing.replicas. With the longest IDs the
# names allow (63-character prefix, 253-character node name, the "::<replica>" suffix),
# a NUMA node and the longer health string, one costs at most 348 bytes on the wire, so
# 12,058 would fit (bench/listandwatch_size.py). 10,000 use 83% of the limit and leave
# room for fields a later API version may add.
MAX_DEVICES = 10000

# spec.topology.numaNodes: more than any machine has today.
MAX_NUMA_NODES = 64
