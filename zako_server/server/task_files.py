"""A task's files: gathered from `source`, `modules` and `tree`, checked, and resolved
from the content store, or rejected naming the field (validation.py's part for files).

Why a module of its own: a task's files are where the store, the tree memo (trees.py)
and the byte limits meet, and that logic is half of what validating a task takes.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable

from zako_sdk.proto.zako.v1 import executor_pb2 as pb
from zako_server.server.cas import ContentStore, Key
from zako_server.server.errors import InvalidTask, MissingBlobs
from zako_server.server.settings import Settings
from zako_server.server.trees import (
    Tree,
    TreeFiles,
    TreeMemo,
    parse_tree,
    resolve_tree,
    task_digest_key,
)

# A module is a path in the task's tree: any character npm allows in a file name (it
# allows nearly all), in '/'-separated segments; not absolute, no empty/'.'/'..'
# segments, no control characters, no backslash (a Windows separator in a packed tree).
MAX_MODULE_NAME = 1024
_MODULE_NAME_BAD = re.compile(r"[\x00-\x1f\x7f\\]")


def _check_name(name: str, field: str, blame: str = "") -> None:
    """`field` is named in the message, `blame` (default: the same) is Rejected.field."""
    blame = blame or field
    if name.startswith("zako:"):
        raise InvalidTask(f"{field} name {name!r} uses the reserved 'zako:' prefix", field=blame)
    segments = name.split("/")
    if (
        not name
        or len(name) > MAX_MODULE_NAME
        or _MODULE_NAME_BAD.search(name)
        or any(segment in ("", ".", "..") for segment in segments)
    ):
        raise InvalidTask(
            f"{field} name {name!r} is not a valid module path ('/'-separated file names, "
            f"relative, no empty, '.' or '..' segments, no control characters or '\\', "
            f"at most {MAX_MODULE_NAME} characters)",
            field=blame,
        )


def _check_size(name: str, size: int, field: str, settings: Settings, blame: str = "") -> None:
    if size > settings.max_source_bytes:
        raise InvalidTask(
            f"{field} ({name}) is {size} bytes; the limit is {settings.max_source_bytes} "
            "for one module (max_source_bytes)",
            field=blame or field,
        )


class TaskFiles:
    """The task's module tree, gathered from `source`, `modules` and `tree`: inline text
    is hashed (encoded once, for its size and its digest), digests are looked up in the
    store, and every blob the tenant lacks is collected so that one rejection names all.
    """

    def __init__(
        self,
        settings: Settings,
        store: ContentStore | None,
        tenant: str,
        memo: TreeMemo | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.tenant = tenant
        self.memo = memo
        self.tree_of: Tree | None = None  # task.tree, checked
        self.tree_files: TreeFiles | None = None  # and resolved
        self.modules: dict[str, str] = {}
        self.digests: dict[str, str] = {}
        self.wanted: dict[str, tuple[Key, str]] = {}  # path -> (blob, field naming it)
        self.tree_bytes = 0
        self.inline_bytes = 0

    def _add(self, name: str, size: int, field: str, limit_field: str, blame: str) -> None:
        if name in self.modules or name in self.wanted:
            raise InvalidTask(f"{field} name {name!r} is given twice", field=blame)
        self.tree_bytes += size
        if self.tree_bytes > self.settings.max_tree_bytes:
            raise InvalidTask(
                f"{limit_field}: the module tree is over {self.tree_bytes} bytes at {field} "
                f"({name}); the limit is {self.settings.max_tree_bytes} for a whole tree "
                "(max_tree_bytes)",
                field=limit_field,
            )

    def inline(self, name: str, source: str, field: str, limit_field: str) -> None:
        _check_name(name, field)
        data = source.encode("utf-8", "surrogatepass")
        _check_size(name, len(data), field, self.settings)
        self._add(name, len(data), field, limit_field, field)
        self.modules[name] = source
        self.digests[name] = hashlib.sha256(data).hexdigest()
        self.inline_bytes += len(data)

    def by_digest(self, name: str, key: Key, field: str, limit_field: str, blame: str) -> None:
        _check_name(name, field, blame)
        _check_size(name, key[1], field, self.settings, blame)
        self._add(name, key[1], field, limit_field, blame)
        self.wanted[name] = (key, blame)

    def tree(self, task: pb.Task) -> Key | None:
        """Add `task.tree`'s files; the tree's key when the store lacks it.

        The tree's own checks (parse, names, sizes, order) are done once per tree digest
        (trees.py); what depends on the rest of the task (file count with task.modules,
        bytes with the inline files, names given twice) is checked here, and when any of
        it fails the files are added one by one, so the error is the same as ever."""
        key = task_digest_key(task.tree, "task.tree")
        store, memo = self.store, self.memo
        if store is None:
            return key
        tree = memo.tree(key) if memo is not None else None
        if tree is None:
            data = store.data(self.tenant, key)
            if data is None:
                return key
            tree = parse_tree(key, data, self._check_entry, self._check_count(task))
            if memo is not None:
                memo.remember(tree)
        elif not store.has(self.tenant, key):
            return key
        self._check_count(task)(len(tree.names))
        if self.tree_bytes + tree.size_bytes > self.settings.max_tree_bytes or any(
            name in tree.paths for name in (*self.modules, *self.wanted)
        ):
            for index, (name, file_key) in enumerate(zip(tree.names, tree.keys, strict=True)):
                field = f"task.tree file {index} ({name!r})"
                self.by_digest(name, file_key, field, "task.tree", "task.tree")
            raise AssertionError("a tree that failed its task's checks passed them")
        self.tree_bytes += tree.size_bytes
        self.tree_of = tree
        return None

    def _check_entry(self, name: str, key: Key, field: str) -> None:
        _check_name(name, field, "task.tree")
        _check_size(name, key[1], field, self.settings, "task.tree")

    def _check_count(self, task: pb.Task) -> Callable[[int], None]:
        def check(files: int) -> None:
            if len(task.modules) + files > self.settings.max_modules:
                raise InvalidTask(
                    f"task.tree: the tree has {len(task.modules) + files} files with "
                    f"task.modules; the limit is {self.settings.max_modules} (max_modules)",
                    field="task.tree",
                )

        return check

    def resolve(self, missing: list[Key]) -> None:
        """Fetch the text of every file named by digest; MissingBlobs naming all the
        blobs the tenant lacks (`missing` starts with the tree, if it is one)."""
        store = self.store
        seen = dict.fromkeys(missing)
        for name, (key, blame) in self.wanted.items():
            text = self._text(name, key, blame)
            if text is None:
                seen[key] = None
                continue
            self.modules[name] = text
            self.digests[name] = key[0]
        if self.tree_of is not None and store is not None:
            self.tree_files = resolve_tree(
                store, self.memo, self.tenant, self.tree_of, self._text, seen
            )
        if seen:
            if store is not None:
                store.note_missing_rejection()
            raise MissingBlobs(
                f"the server lacks {len(seen)} blob(s) the task names; upload them "
                "(FindMissingBlobs, BatchUpdateBlobs) and submit again: "
                + ", ".join(f"{h}/{n}" for h, n in list(seen)[:5])
                + (" ..." if len(seen) > 5 else ""),
                list(seen),
            )
        if self.tree_files is not None and any(_is_manifest(name) for name in self.modules):
            # A package.json beside the tree may change how the tree's own files are
            # read (their package "type"): such a task is not the tree's unit, but its
            # files, one by one, as before trees were units (rare: no memo to share).
            for name, text in self.tree_files.texts.items():
                self.modules[name] = text
                self.digests[name] = self.tree_files.digests[name]
            self.tree_files = None

    def _text(self, name: str, key: Key, blame: str) -> str | None:
        store = self.store
        try:
            return store.text(self.tenant, key) if store is not None else None
        except UnicodeDecodeError as exc:
            raise InvalidTask(
                f"{blame}: blob {key[0]}/{key[1]} ({name}) is not UTF-8 text: {exc}",
                field=blame,
            ) from exc


def _is_manifest(name: str) -> bool:
    return name == "package.json" or name.endswith("/package.json")


def gather(task: pb.Task, entry: str, files: TaskFiles) -> list[Key]:
    """Gather every file of the task's tree into `files` (or raise naming the field);
    the tree's key when the store lacks it (then its files are unknown)."""
    # Each read of a string field builds a new str from the message: read it once.
    source = task.source
    if source:
        if source.isspace():
            raise InvalidTask(
                "task.source is empty: give the entry module's JavaScript", field="task.source"
            )
        files.inline(entry, source, "task.source", "task.source")
    modules = task.modules
    if len(modules) > files.settings.max_modules:
        raise InvalidTask(
            f"task.modules has {len(modules)} files; the limit is "
            f"{files.settings.max_modules} (max_modules)",
            field="task.modules",
        )
    for index, module in enumerate(modules):
        field = f"task.modules[{index}]"
        # An inline module with empty text and no digest is an empty file (as before
        # digests existed); one that sets both is ambiguous.
        if module.HasField("digest"):
            if module.source:
                raise InvalidTask(
                    f"{field} ({module.name}) sets both source and digest; set one",
                    field=field,
                )
            key = task_digest_key(module.digest, f"{field}.digest")
            files.by_digest(module.name, key, field, "task.modules", field)
        else:
            files.inline(module.name, module.source, field, "task.modules")
    missing = []
    if task.HasField("tree"):
        tree_missing = files.tree(task)
        if tree_missing is not None:
            missing.append(tree_missing)
    if (
        not source
        and not missing
        and entry not in files.modules
        and entry not in files.wanted
        and (files.tree_of is None or entry not in files.tree_of.paths)
    ):
        raise InvalidTask(
            "task.source is empty: give the entry module's JavaScript, or name a file of "
            f"task.modules or task.tree in task.entry_name (no file {entry!r})",
            field="task.source",
        )
    return missing
