"""A task's ModuleTree as one unit: parsed and checked once per tree, resolved once per
tenant while the content store removed nothing.

    task.tree (key) ──TreeMemo.parse()──▶ Tree: sorted names, digests, sizes, manifest
                                          (once per tree digest: settings never change)
    (tenant, key) ───TreeMemo.resolve()─▶ TreeFiles: every file's text, held by the job
                                          (once per ContentStore.generation)

Why: a task naming lodash's 1,057-file tree used to parse the blob, check every name and
look up every text on every task, and every later stage (transforms, the worker's pipe,
the isolate) walked the files again: a repeated task cost O(files in the tree), not
O(files it loads). Now a repeated tree costs a dictionary lookup and a counter
comparison here, and the stages after validation key their own work on the tree's
manifest digest (transforms.py, code_mirror.py, the worker's sources.py and modules.js).

Why a generation and not a per-file check: a blob can only leave the store (eviction,
TTL, an operator's evict), never change, and a tenant's presence is only ever added, so
"nothing was removed since" proves every text the memo holds is still present for the
tenant. When something was removed, the tree is resolved again file by file, with
MissingBlobs naming what is gone, exactly as the first time.

The store's LRU order and TTL still see a hot tree as used: a memo hit refreshes every
file's blob at most once per REFRESH_S (amortized nothing), so the files of a tree in
use are never the coldest blobs for longer than that.

The job keeps the texts themselves (TreeFiles), so an eviction while a task waits in
line cannot take a file from under it.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

from google.protobuf.message import DecodeError

from zako_sdk.proto.zako.v1 import cas_pb2
from zako_server.server.cas import ContentStore, Key, check_digest
from zako_server.server.errors import InvalidBlob, InvalidTask

# Trees whose checked entries are kept, and (tenant, tree) pairs whose texts are kept.
TREE_ENTRIES = 256
RESOLVED_ENTRIES = 64
# A memo hit refreshes the tree's blobs in the store at most this often (see above).
REFRESH_S = 1.0
_MASK = (1 << 256) - 1


@functools.lru_cache(maxsize=4096)
def pair_hash(path: str, digest: str) -> int:
    """One file's share of a file-set hash (`file_set`): SHA-256 of its length-prefixed
    path and digest, as an integer. Kept for the 4,096 most recent pairs (each a task's
    seed needs, for each of its own files): a task sent again with other input, the
    common case, hashes none of them again."""
    h = hashlib.sha256()
    for part in (path, digest):
        data = part.encode("utf-8", "surrogatepass")
        h.update(len(data).to_bytes(8, "big"))
        h.update(data)
    return int.from_bytes(h.digest(), "big")


def file_set(pairs: dict[str, str], start: int = 0) -> int:
    """An order-free hash of a set of (path, digest) pairs: the sum of their hashes, so a
    tree's share is computed once and a task's own files are added to it (the seed of a
    task is the same however its files travelled: inline, by digest or in a tree)."""
    total = start
    for path, digest in pairs.items():
        total = (total + pair_hash(path, digest)) & _MASK
    return total


@dataclass(frozen=True, eq=False)
class Tree:
    """A ModuleTree blob, parsed and checked: its files in the tree's (sorted) order."""

    key: Key
    names: tuple[str, ...]
    keys: tuple[Key, ...]
    paths: dict[str, str]  # path -> hex digest
    size_bytes: int
    # Compact JSON of the sorted [path, digest] pairs, and its SHA-256: the tree's name
    # from validation on (the action cache's key, the transform memo's key).
    manifest: str
    manifest_digest: str
    file_set: int


@dataclass(eq=False)
class TreeFiles:
    """A tree resolved for one tenant: every file's text (path -> text, tree order).

    Shared, unchanged, by every job that names the tree while the store removes
    nothing; the stages after validation attach what they derive from it (the
    transform stage's answers) by the tree's identity or manifest digest."""

    tree: Tree
    texts: dict[str, str]
    generation: int
    refreshed: float = field(default=0.0)

    @property
    def digests(self) -> dict[str, str]:
        return self.tree.paths

    @property
    def manifest_digest(self) -> str:
        return self.tree.manifest_digest


def task_digest_key(digest: cas_pb2.Digest, field: str, what: str = "") -> Key:
    """A Digest a task names, checked: InvalidTask naming `field` when it is malformed
    (a task's digest: the task is what is wrong, not a blob)."""
    try:
        return check_digest(digest.hash, digest.size_bytes, what or field)
    except InvalidBlob as exc:
        raise InvalidTask(exc.message, field=field) from exc


def parse_tree(
    key: Key,
    data: bytes,
    check: Callable[[str, Key, str], None],
    count: Callable[[int], None],
) -> Tree:
    """Parse and check a ModuleTree blob: its file count (`count(n)` raises InvalidTask),
    then sorted unique names, well-formed digests, each file within the per-file limits
    (`check(name, key, field)` raises InvalidTask). The errors name task.tree's field."""
    tree = cas_pb2.ModuleTree()
    try:
        tree.ParseFromString(data)
    except DecodeError as exc:
        raise InvalidTask(
            f"task.tree: blob {key[0]}/{key[1]} is not a zako.v1.ModuleTree", field="task.tree"
        ) from exc
    count(len(tree.files))
    names: list[str] = []
    keys: list[Key] = []
    previous = b""
    size = 0
    for index, entry in enumerate(tree.files):
        field_name = f"task.tree file {index} ({entry.name!r})"
        encoded = entry.name.encode("utf-8", "surrogatepass")
        if index and encoded <= previous:
            raise InvalidTask(
                f"{field_name}: the tree's files must be sorted by name (as UTF-8 bytes), "
                "each name once",
                field="task.tree",
            )
        previous = encoded
        file_key = task_digest_key(entry.digest, "task.tree", field_name)
        check(entry.name, file_key, field_name)
        names.append(entry.name)
        keys.append(file_key)
        size += file_key[1]
    paths = {name: k[0] for name, k in zip(names, keys, strict=True)}
    manifest = json.dumps(list(paths.items()), ensure_ascii=False, separators=(",", ":"))
    return Tree(
        key,
        tuple(names),
        tuple(keys),
        paths,
        size,
        manifest,
        hashlib.sha256(manifest.encode("utf-8", "surrogatepass")).hexdigest(),
        file_set(paths),
    )


def resolve_tree(
    store: ContentStore,
    memo: TreeMemo | None,
    tenant: str,
    tree: Tree,
    text: Callable[[str, Key, str], str | None],
    missing: dict[Key, None],
) -> TreeFiles | None:
    """The tree's texts for `tenant`: from `memo` while the store removed nothing, else
    looked up (`text(name, key, field)`, None when absent) and remembered; None when some
    are absent, then added to `missing` in the tree's order."""
    found = memo.resolved(store, tenant, tree) if memo is not None else None
    if found is not None:
        return found
    # Read before the lookups: one that evicts (decoding grows a blob) must leave this
    # resolution stale for the next task, never trusted.
    generation = store.generation
    texts: dict[str, str] = {}
    complete = True
    for name, key in zip(tree.names, tree.keys, strict=True):
        found_text = text(name, key, "task.tree")
        if found_text is None:
            missing[key] = None  # perhaps there already (a module of the task names it)
            complete = False
        else:
            texts[name] = found_text
    if not complete:
        return None
    files = TreeFiles(tree, texts, generation)
    if memo is not None:
        memo.keep(tenant, files)
    return files


class TreeMemo:
    """Checked trees by key, and resolved trees by (tenant, key) and store generation.

    One per server (the service's validation uses it); everything runs on the event loop.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._trees: OrderedDict[Key, Tree] = OrderedDict()
        self._resolved: OrderedDict[tuple[str, Key], TreeFiles] = OrderedDict()
        self._clock = clock

    def tree(self, key: Key) -> Tree | None:
        found = self._trees.get(key)
        if found is not None:
            self._trees.move_to_end(key)
        return found

    def remember(self, tree: Tree) -> None:
        self._trees[tree.key] = tree
        if len(self._trees) > TREE_ENTRIES:
            self._trees.popitem(last=False)

    def resolved(self, store: ContentStore, tenant: str, tree: Tree) -> TreeFiles | None:
        """The tree's texts for `tenant` when nothing left the store since they were
        looked up (None: look them up again)."""
        found = self._resolved.get((tenant, tree.key))
        if found is None or found.tree is not tree:
            return None
        if found.generation != store.generation:
            self._drop_stale(store.generation)
            return None
        self._resolved.move_to_end((tenant, tree.key))
        now = self._clock()
        if now - found.refreshed >= REFRESH_S:
            found.refreshed = now
            store.refresh(tenant, tree.keys)
        return found

    def keep(self, tenant: str, files: TreeFiles) -> None:
        """Remember a tree just resolved, dropping those resolved before the store last
        removed something: they would be looked up again anyway, and their texts, which
        the store may no longer hold, must not be kept alive here."""
        self._drop_stale(files.generation)
        files.refreshed = self._clock()
        self._resolved[(tenant, files.tree.key)] = files
        if len(self._resolved) > RESOLVED_ENTRIES:
            self._resolved.popitem(last=False)

    def _drop_stale(self, generation: int) -> None:
        """Forget every tree resolved before the store's `generation`, at the first sign
        of it: their texts may be what the store just let go, and must not outlive it
        here (up to RESOLVED_ENTRIES whole trees)."""
        stale = [k for k, v in self._resolved.items() if v.generation != generation]
        for key in stale:
            del self._resolved[key]
