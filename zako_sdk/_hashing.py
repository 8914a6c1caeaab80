"""When and where a task's module tree is hashed: off the event loop when it is large, and
once for all the tasks of a batch that share it.

Its own concern because hashing is the one CPU-heavy step before a task is sent (a
project with its node_modules is megabytes): done on the event loop it would stall every
other task of the client (the sync client's too), and done per task a batch of a
thousand over one project would hash it a thousand times.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Mapping

from zako_sdk.models import TaskSpec
from zako_sdk.trees import ModuleTree

__all__ = ["HASH_OFF_LOOP_BYTES", "hashed", "shared_trees"]

# A modules dict larger than this (or any directory) is hashed on a worker thread: the
# event loop (the sync client's too) keeps serving other tasks meanwhile, and hashlib
# releases the GIL on large inputs. Smaller ones cost less than the thread hop.
HASH_OFF_LOOP_BYTES = 256 << 10


async def hashed(spec: TaskSpec) -> TaskSpec:
    """`spec` with its `modules` as a ModuleTree, hashed off the loop when large."""
    modules = spec.modules
    if modules is None or isinstance(modules, ModuleTree):
        return spec
    if isinstance(modules, Mapping) and sum(map(len, modules.values())) < HASH_OFF_LOOP_BYTES:
        return dataclasses.replace(spec, modules=ModuleTree.of(modules))
    return dataclasses.replace(spec, modules=await asyncio.to_thread(ModuleTree.of, modules))


def shared_trees(specs: list[TaskSpec]) -> list[TaskSpec]:
    """`specs` with each distinct `modules` dict or path hashed once for the whole batch:
    a batch of a thousand tasks over one project must not hash it a thousand times.
    (By identity: the batch holds the specs, so an id cannot be reused meanwhile.)"""
    trees: dict[int | str, ModuleTree] = {}
    shared = []
    for spec in specs:
        modules = spec.modules
        if modules is not None and not isinstance(modules, ModuleTree):
            key: int | str = id(modules) if isinstance(modules, Mapping) else os.fspath(modules)
            tree = trees.get(key)
            if tree is None:
                tree = trees[key] = ModuleTree.of(modules)
            spec = dataclasses.replace(spec, modules=tree)
        shared.append(spec)
    return shared
