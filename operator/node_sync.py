"""Writes the node status node_status.py decides: fake nodes' resources, stale kubelet keys.

Level-based like the SimulatedDevice reconcile: every call reads the latest indexes and
patches only the nodes that differ. A pass over every node (after any SimulatedDevice
changed) is coalesced: calls that arrive while one runs make one more pass, not one each,
so ten objects created at once cost about two passes, each writing all ten resources of a
node in one patch.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
from collections.abc import Callable, Collection, Mapping
from typing import Any

import urllib3
from kubernetes.client.exceptions import ApiException

from simdev.operator.coalesce import Coalescer
from simdev.operator.conflicts import resolve
from simdev.operator.deployer import Deployer
from simdev.operator.kube import api_error
from simdev.operator.model import Device
from simdev.operator.node_status import NodePatch, node_patches
from simdev.operator.simulation import fault_clock
from simdev.operator.world import Observe, World
from simdev.plugin.faults import Clock

logger = logging.getLogger(__name__)

# Patches in flight at once: the API server takes them in parallel, the GIL does the rest.
CONCURRENT_PATCHES = 8
# A pass waits this long first, so that a burst of changes (ten objects applied
# together) makes one pass.
PASS_DELAY = 1.0
# A pass that failed somewhere is made again after this long.
RETRY_DELAY = 5.0


def in_force(
    world: World, status_of: Callable[[Device], Mapping[str, Any]], now: float
) -> list[tuple[Device, Clock]]:
    """The objects that serve their resource now (not deleting, not held back by a conflict)."""
    verdicts = resolve(world.devices.values())
    return [
        (d, fault_clock(d, status_of(d), now))
        for name, d in sorted(world.devices.items())
        if not d.deleting and verdicts.get(name) is None
    ]


class NodeSync:
    def __init__(
        self,
        deployer: Deployer,
        view: Callable[[Observe], World],
        status_of: Callable[[Device], Mapping[str, Any]],
        epoch: Callable[[], float] = time.time,
    ) -> None:
        self._deployer = deployer
        self._view = view
        self._status_of = status_of
        self._epoch = epoch
        self._passes = Coalescer("node status pass", delay=PASS_DELAY)
        # Threads of its own: the loop's default executor also runs kopf's sync indexers for
        # every watch event, and a pass's patches queued behind those took minutes.
        self._threads = concurrent.futures.ThreadPoolExecutor(
            CONCURRENT_PATCHES, thread_name_prefix="node-status"
        )
        self._retry: asyncio.TimerHandle | None = None
        # Per object, what of it the node status depends on, as last seen in its events.
        self._seen: dict[str, tuple[str, int, bool]] = {}

    def patches(self, observe: Observe, names: Collection[str] | None = None) -> list[NodePatch]:
        """What the nodes (those named, or all) need now, judged from memory alone."""
        world = self._view(observe)
        nodes = world.nodes if names is None else [n for n in world.nodes if n.name in names]
        now = self._epoch()
        return node_patches(nodes, in_force(world, self._status_of, now), now)

    async def sync_node(self, name: str, observe: Observe, everything: Observe) -> None:
        """One node, after an event of its own (cheap: only that node is looked at).

        observe need see only that node; a failure is retried by a pass that sees everything.
        """
        if not await self._apply(self.patches(observe, {name})):
            self._schedule_retry(everything)

    async def sync_all(self, observe: Observe) -> None:
        """Every node; returns once a pass that started after this call has finished."""
        await self._passes.run(lambda: self._pass(observe))

    def request_sync(self, observe: Observe) -> None:
        """Every node, soon: for callers that need not wait."""
        self._passes.poke(lambda: self._pass(observe))

    def device_event(self, name: str, body: Mapping[str, Any], observe: Observe) -> None:
        """A SimulatedDevice's watch event: a pass when its spec or its deletion moved.

        Most of its events are status writes, which change nothing on the nodes.
        """
        meta = body.get("metadata") or {}
        now = (
            str(meta.get("uid", "")),
            int(meta.get("generation") or 0),
            bool(meta.get("deletionTimestamp")),
        )
        if self._seen.get(name) != now:
            self._seen[name] = now
            self.request_sync(observe)

    def device_gone(self, name: str, observe: Observe) -> None:
        self._seen.pop(name, None)
        self.request_sync(observe)

    async def _pass(self, observe: Observe) -> None:
        began = time.monotonic()
        patches = self.patches(observe)
        decided = time.monotonic() - began
        if not await self._apply(patches):
            self._schedule_retry(observe)
        if patches:
            logger.info(
                "node status: %d nodes patched in %.1fs (%.2fs to decide)",
                len(patches),
                time.monotonic() - began,
                decided,
            )

    async def _apply(self, patches: list[NodePatch]) -> bool:
        """Sends the patches, a few at a time; False when any failed (logged)."""
        if not patches:
            return True
        gate = asyncio.Semaphore(CONCURRENT_PATCHES)

        async def one(patch: NodePatch) -> bool:
            async with gate:
                try:
                    await asyncio.get_running_loop().run_in_executor(
                        self._threads,
                        self._deployer.patch_node_status,
                        patch.node,
                        patch.as_merge_patch(),
                    )
                except ApiException as err:
                    if err.status == 404:  # the node went away: nothing to keep right
                        return True
                    logger.warning("node %s: status patch failed: %s", patch.node, api_error(err))
                    return False
                except urllib3.exceptions.HTTPError as err:
                    logger.warning("node %s: status patch failed: %s", patch.node, err)
                    return False
                return True

        results = await asyncio.gather(*(one(p) for p in patches))
        return all(results)

    def _schedule_retry(self, observe: Observe) -> None:
        if self._retry is not None:
            return
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._retry = None
            self.request_sync(observe)

        self._retry = loop.call_later(RETRY_DELAY, fire)
