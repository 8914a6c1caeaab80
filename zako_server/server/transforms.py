"""The transform stage's pool: a few processes that turn ESM/TypeScript/JSX into what the
workers run, and a cache so that a file is transformed once per server, not per task.

Why it looks the way it does:
- It is off the V8 workers' path: a task's files are transformed before the task is
  dispatched, in processes of their own (zako_server/transform), so a worker's isolate
  never loads sucrase and a slow transform never holds a worker.
- It is small: transforming is cheap next to running, and a cache hit costs a digest, so
  a few processes serve a whole server (`transform_workers`, else `default_processes`).
- Answers are cached by (extension, package type, SHA-256 of the text): the file's name
  does not change sucrase's output, so the same file in two trees is one entry. The
  cache is bounded by the bytes it holds (least recently used out first). Concurrent
  tasks asking for the same file share one transform.
- A ModuleTree is a unit (server/trees.py): the answers for its files are kept per tree
  (by its manifest digest, the TREE_ENTRIES most recent trees), so a repeated tree costs
  the stage one lookup, not one per file; a task's own files beside it are looked up as
  before, typed by the tree's package.json files too (read once per tree).
- A CommonJS file is compiled from its own text; the stage only adds the names an ES
  module importing it gets (cjs-module-lexer, as Node: an empty list means none) and
  renames `import(` and `import.meta` in place (then its answer carries the code).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import multiprocessing
import os
from collections import OrderedDict
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from zako_server.transform import EXTENSIONS, bundle, process

if TYPE_CHECKING:
    from zako_server.server.trees import TreeFiles

log = logging.getLogger("zako.transforms")

BATCH_FILES = 64
BATCH_BYTES = 1 << 20
# Trees whose answers (and package types) are kept as a whole.
TREE_ENTRIES = 16
Answers = dict[str, dict[str, Any]]


@dataclass
class _TreeEntry:
    """What the stage knows of one tree: each directory's package type, and the answers
    for its files once they were all at hand (the same dict object every task, so the
    pipe's pack of them is built once too: code_mirror.py)."""

    types: dict[str, str]
    answers: Answers | None = None


def default_processes(cpus: int | None = None) -> int:
    """A few processes, not a share of the machine: 1 up to 4 CPUs, then 1 per 8, max 4."""
    n = cpus if cpus is not None else (os.cpu_count() or 1)
    return max(1, min(4, n // 8 + 1)) if n > 4 else 1


class TransformError(RuntimeError):
    """The transform pool could not answer (its processes died or are missing)."""


@dataclass
class TransformStats:
    """Figures for Stats and metrics."""

    processes: int = 0
    queued: int = 0  # files waiting for a process
    busy: int = 0  # batches being transformed
    cache_hits: int = 0
    cache_misses: int = 0
    cache_entries: int = 0
    cache_bytes: int = 0
    files_transformed: int = 0
    transform_seconds: float = 0.0


def extension(name: str) -> str:
    slash = name.rfind("/")
    dot = name.rfind(".")
    return name[dot:] if dot > slash + 1 else ""


def package_types(modules: dict[str, str]) -> dict[str, str]:
    """{directory: "module" | "commonjs" | ""}: each directory's nearest package.json "type"
    (as Node reads it: an unreadable manifest counts as none)."""
    found: dict[str, str] = {}
    for name, text in modules.items():
        if name == "package.json" or name.endswith("/package.json"):
            try:
                data = json.loads(text)
            except ValueError:
                continue
            value = data.get("type") if isinstance(data, dict) else None
            found[name[: -len("package.json")].rstrip("/")] = (
                value if value in ("module", "commonjs") else ""
            )
    return found


def _type_of(name: str, manifests: dict[str, str]) -> str:
    directory = name.rsplit("/", 1)[0] if "/" in name else ""
    while True:
        if directory in manifests:
            return manifests[directory]
        if directory == "" or directory.endswith("node_modules"):
            return ""
        directory = directory.rsplit("/", 1)[0] if "/" in directory else ""


class TransformPool:
    """Transforms a task's files (or answers from the cache) before it is dispatched."""

    def __init__(self, processes: int, cache_bytes: int = 256 << 20) -> None:
        self.processes = max(1, processes)
        self.cache_limit = cache_bytes
        self._cache: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._sizes: dict[str, int] = {}
        self._inflight: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._trees: OrderedDict[str, _TreeEntry] = OrderedDict()
        self._executor: ProcessPoolExecutor | None = None
        self._background: set[asyncio.Task[None]] = set()
        self.unavailable: str | None = None  # why the stage is off, when it is
        self.stats = TransformStats(processes=self.processes)

    def _pool(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(
                self.processes,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=process.init,
            )
        return self._executor

    async def start(self) -> None:
        """Start the processes and load the bundle now, not on the first task.

        Without the stage's JavaScript (zako_server/jsdeps not installed: `make setup`)
        the server still serves CommonJS: the stage is switched off, loudly, and ES
        modules or TypeScript then fail to compile in the task that sends them."""
        if not bundle.installed():
            self.unavailable = f"transform stage off: {bundle.node_modules()} is not installed"
            log.warning("%s (run `make setup`): only CommonJS modules will run", self.unavailable)
            return
        loop = asyncio.get_running_loop()
        pool = self._pool()
        await asyncio.gather(
            *(loop.run_in_executor(pool, process.warm) for _ in range(self.processes))
        )

    async def close(self) -> None:
        if self._executor is not None:
            executor, self._executor = self._executor, None
            await asyncio.get_running_loop().run_in_executor(None, executor.shutdown)

    @staticmethod
    def key(source: str, ext: str, type_: str, digest: str | None = None) -> str:
        """The cache key of one file: its text by digest (validation's, when it has one:
        the text is not hashed a second time on every task)."""
        if digest is None:
            digest = hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest()
        return f"{ext}:{type_}:{digest}"

    def _wanted(
        self,
        modules: dict[str, str],
        digests: dict[str, str] | None,
        types: dict[str, str] | None = None,
    ) -> list[tuple[str, str, str, str]]:
        """(name, key, ext, type) of every file the stage transforms; `types` are the
        package types of a tree beside `modules` (their own package.json files win)."""
        manifests = package_types(modules)
        if types:
            manifests = {**types, **manifests}
        wanted: list[tuple[str, str, str, str]] = []
        known = digests or {}
        for name in modules:
            ext = extension(name)
            if ext in EXTENSIONS:
                type_ = _type_of(name, manifests)
                key = self.key(modules[name], ext, type_, known.get(name))
                wanted.append((name, key, ext, type_))
        return wanted

    def _tree(self, tree: TreeFiles) -> _TreeEntry:
        entry = self._trees.get(tree.manifest_digest)
        if entry is None:
            entry = self._trees[tree.manifest_digest] = _TreeEntry(package_types(tree.texts))
            if len(self._trees) > TREE_ENTRIES:
                self._trees.popitem(last=False)
        else:
            self._trees.move_to_end(tree.manifest_digest)
        return entry

    def ready_task(
        self, modules: dict[str, str], digests: dict[str, str], tree: TreeFiles | None
    ) -> tuple[Answers, Answers | None] | None:
        """`prepare_task`'s answer when every file's is at hand, without a coroutine:
        (answers for `modules`, answers for the tree's files); None when some file must
        wait for the stage. A tree answered before costs one lookup."""
        if tree is None:
            ready = self.ready(modules, digests)
            return None if ready is None else (ready, None)
        if self.unavailable is not None:
            return {}, {}
        entry = self._tree(tree)
        if entry.answers is None:
            found = self.ready(tree.texts, tree.digests)
            if found is None:
                return None
            entry.answers = found
        else:
            self.stats.cache_hits += len(entry.answers)
        own = self.ready(modules, digests, entry.types)
        return None if own is None else (own, entry.answers)

    async def prepare_task(
        self, modules: dict[str, str], digests: dict[str, str], tree: TreeFiles | None
    ) -> tuple[Answers, Answers | None]:
        """(answers for `modules`, answers for the tree's files, None without a tree)."""
        if tree is None:
            return await self.prepare(modules, digests), None
        if self.unavailable is not None:
            return {}, {}
        entry = self._tree(tree)
        answers = entry.answers
        if answers is None:
            answers = await self.prepare(tree.texts, tree.digests)
            entry = self._tree(tree)
            if entry.answers is None:
                entry.answers = answers
            answers = entry.answers
        return await self.prepare(modules, digests, entry.types), answers

    def ready(
        self,
        modules: dict[str, str],
        digests: dict[str, str] | None = None,
        types: dict[str, str] | None = None,
    ) -> dict[str, dict[str, Any]] | None:
        """`prepare`'s answer when every file's is already cached (the usual warm task),
        without a coroutine or a task: None when some file must wait for the stage."""
        if self.unavailable is not None:
            return {}
        answers: dict[str, dict[str, Any]] = {}
        hits = []
        for name, key, _, _ in self._wanted(modules, digests, types):
            hit = self._cache.get(key)
            if hit is None:
                return None
            hits.append(key)
            answers[name] = hit
        for key in hits:
            self._cache.move_to_end(key)
        self.stats.cache_hits += len(hits)
        return answers

    def _remember(self, key: str, answer: dict[str, Any]) -> None:
        size = len(json.dumps(answer))
        self._cache[key] = answer
        self._sizes[key] = size
        self.stats.cache_bytes += size
        while self.stats.cache_bytes > self.cache_limit and len(self._cache) > 1:
            old, _ = self._cache.popitem(last=False)
            self.stats.cache_bytes -= self._sizes.pop(old)
        self.stats.cache_entries = len(self._cache)

    async def prepare(
        self,
        modules: dict[str, str],
        digests: dict[str, str] | None = None,
        types: dict[str, str] | None = None,
    ) -> dict[str, dict[str, Any]]:
        """{name: {esm, code, map} | {error}} for every file that needs more than its text.
        `digests` (path -> sha256 of the text, as validation computed them) key the cache;
        `types`: see _wanted."""
        if self.unavailable is not None:
            return {}
        wanted = self._wanted(modules, digests, types)
        answers: dict[str, dict[str, Any]] = {}
        missing: dict[str, tuple[str, str, str, str]] = {}
        waits: list[tuple[str, asyncio.Future[dict[str, Any]]]] = []
        for name, key, ext, type_ in wanted:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                self.stats.cache_hits += 1
                answers[name] = hit
            elif key in self._inflight:
                self.stats.cache_hits += 1
                waits.append((name, self._inflight[key]))
            elif key in missing:
                waits.append((name, self._inflight[key]))
            else:
                self.stats.cache_misses += 1
                missing[key] = (name, modules[name], ext, type_)
                self._inflight[key] = asyncio.get_running_loop().create_future()
                waits.append((name, self._inflight[key]))
        if missing:
            # Its own task: a caller that is cancelled (its task was) must not fail the
            # other tasks waiting for the same files.
            work = asyncio.ensure_future(self._run(missing))
            self._background.add(work)
            work.add_done_callback(self._background.discard)
            work.add_done_callback(lambda t: t.cancelled() or t.exception())
        for name, future in waits:
            answers[name] = await asyncio.shield(future)
        return answers

    async def _run(self, missing: dict[str, tuple[str, str, str, str]]) -> None:
        batches: list[list[tuple[str, tuple[str, str, str, str]]]] = [[]]
        size = 0
        for key, item in missing.items():
            if batches[-1] and (len(batches[-1]) >= BATCH_FILES or size >= BATCH_BYTES):
                batches.append([])
                size = 0
            batches[-1].append((key, item))
            size += len(item[1])
        self.stats.queued += len(missing)
        try:
            await asyncio.gather(*(self._batch(batch) for batch in batches))
        except BaseException as exc:
            for key in missing:
                future = self._inflight.pop(key, None)
                if future is not None and not future.done():
                    future.set_exception(TransformError(f"the transform stage failed: {exc!r}"))
                    future.exception()  # retrieved: the task that waits re-raises it
            raise

    async def _batch(self, batch: list[tuple[str, tuple[str, str, str, str]]]) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        self.stats.busy += 1
        try:
            results = await loop.run_in_executor(
                self._pool(), process.transform_batch, [item for _, item in batch]
            )
        except BrokenProcessPool as exc:
            self._executor = None  # the next batch starts a new pool
            raise TransformError("a transform process died") from exc
        finally:
            self.stats.busy -= 1
            self.stats.queued -= len(batch)
        self.stats.files_transformed += len(batch)
        self.stats.transform_seconds += loop.time() - started
        for (key, _item), answer in zip(batch, results, strict=True):
            self._remember(key, answer)
            future = self._inflight.pop(key)
            future.set_result(answer)
