"""A task's module tree: a name -> text map, hashed once into content-addressed blobs.

    {path: text} ──┐
    Path("proj") ──┼─ ModuleTree.of ─▶ ModuleTree: each file's Digest (SHA-256 of its
    ModuleTree ────┘                   UTF-8 text), the zako.v1.ModuleTree blob listing
                                       them, and that blob's Digest (Task.tree)

A tree travels as one digest (issue #15): the client asks a replica which of the tree's
blobs it lacks, uploads only those (`_uploads.py`) and names the tree in `Task.tree`.
Hashing is the expensive part for a big tree (a 1,049-file node_modules), so a
ModuleTree is built once and reused: `run(..., modules=tree)` with the same object costs
no hashing at all, and its digest is what lets a replica keep it between calls.

The blob is deterministic: entries sorted by name as UTF-8 bytes (what the server
checks), each name once, serialized in field order. So the same files give the same
digest from a dict, from a directory, in any process: two clients share the server's
copy and its cached results.

A directory goes as it is on disk: every file, by its path relative to the folder. Two
kinds of file are left out, because Node would never load them as modules: files that
are not UTF-8 text (images, native addons, WebAssembly: a task's modules are strings)
and what is only tooling (`.git/`, npm's `node_modules/.bin/` links). Symbolic links to
files are followed; to directories not (a link cycle would never end).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from zako_sdk.proto.zako.v1 import cas_pb2

__all__ = ["Digest", "ModuleTree", "entry_in_tree", "pack_directory"]

SKIPPED_DIRECTORIES = frozenset({".git", ".bin"})

Modules = Mapping[str, str] | str | os.PathLike[str]
"""What `modules=` takes besides a ModuleTree: a name -> text map or a directory."""


@dataclass(frozen=True)
class Digest:
    """A blob's name by content: lowercase hex SHA-256 and length in bytes (cas.proto).

    Digest.of(b"module.exports = 1")
    """

    hash: str
    size_bytes: int

    @classmethod
    def of(cls, data: bytes) -> Digest:
        return cls(hashlib.sha256(data).hexdigest(), len(data))

    @classmethod
    def from_proto(cls, digest: cas_pb2.Digest) -> Digest:
        return cls(digest.hash, digest.size_bytes)

    def to_proto(self) -> cas_pb2.Digest:
        return cas_pb2.Digest(hash=self.hash, size_bytes=self.size_bytes)

    def __str__(self) -> str:
        return f"{self.hash}/{self.size_bytes}"  # REAPI's spelling, as in "blobs/{hash}/{size}"


def pack_directory(root: str | os.PathLike[str]) -> dict[str, str]:
    """{relative POSIX path: text} for the files under `root` (see the module docstring)."""
    base = Path(root)
    if not base.is_dir():
        raise ValueError(f"modules directory {str(base)!r} is not a directory")
    tree: dict[str, str] = {}
    for directory, subdirectories, files in os.walk(base):
        subdirectories[:] = sorted(d for d in subdirectories if d not in SKIPPED_DIRECTORIES)
        for name in sorted(files):
            path = Path(directory, name)
            try:
                text = path.read_bytes().decode("utf-8")
            except (UnicodeDecodeError, OSError):
                continue
            tree[path.relative_to(base).as_posix()] = text
    return tree


def _name_key(item: tuple[str, object]) -> bytes:
    # The server compares names as UTF-8 bytes; Python's str order is by code point,
    # which differs for characters beyond the BMP against U+E000..U+FFFF.
    return item[0].encode("utf-8", "surrogatepass")


class ModuleTree:
    """A module tree hashed once, to be sent as one digest and reused across calls.

        tree = ModuleTree.of(Path("project"))          # or a {path: text} dict
        for n in range(1000):
            client.run(source, input=n, modules=tree, entry_name="main.js")

    The first call on each replica uploads the blobs that replica lacks; later calls
    send only `tree.digest`. A file at the task's `entry_name` is the entry: the task's
    `source` takes its place (see `without`), so one tree serves several entries.
    """

    __slots__ = ("_blobs", "_digests", "_files", "_without", "blob", "digest")

    def __init__(self, files: Mapping[str, str]) -> None:
        ordered = sorted(files.items(), key=_name_key)
        blobs: dict[str, bytes] = {}
        digests: dict[str, Digest] = {}
        for name, text in ordered:
            if not isinstance(name, str) or not isinstance(text, str):
                raise TypeError(f"module {name!r}: names and sources are str")
            try:
                data = text.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise ValueError(f"module {name!r} is not valid Unicode text: {exc}") from None
            digest = Digest.of(data)
            digests[name] = digest
            blobs[digest.hash] = data
        self._assemble(dict(ordered), digests, blobs)

    def _assemble(
        self, files: dict[str, str], digests: dict[str, Digest], blobs: dict[str, bytes]
    ) -> None:
        self._files = files
        self._digests = digests
        self._blobs = blobs
        self._without: dict[str, ModuleTree] = {}
        message = cas_pb2.ModuleTree(
            files=[cas_pb2.TreeEntry(name=n, digest=d.to_proto()) for n, d in digests.items()]
        )
        self.blob: bytes = message.SerializeToString(deterministic=True)
        self.digest: Digest = Digest.of(self.blob)

    @classmethod
    def of(cls, modules: ModuleTree | Modules) -> ModuleTree:
        """`modules` as a tree: itself if already one, else hashed now."""
        if isinstance(modules, ModuleTree):
            return modules
        if isinstance(modules, Mapping):
            return cls(modules)
        return cls(pack_directory(modules))

    @classmethod
    def from_directory(cls, root: str | os.PathLike[str]) -> ModuleTree:
        """The files under `root` (see the module docstring for what is left out)."""
        return cls(pack_directory(root))

    @property
    def files(self) -> Mapping[str, str]:
        """{name: text}, sorted by name (read-only)."""
        return MappingProxyType(self._files)

    @property
    def entries(self) -> Mapping[str, Digest]:
        """{name: digest of its text}, as the ModuleTree blob lists them (read-only)."""
        return MappingProxyType(self._digests)

    @property
    def size_bytes(self) -> int:
        """Bytes of the distinct file blobs plus the tree blob: the most a first call uploads."""
        return len(self.blob) + sum(len(data) for data in self._blobs.values())

    def blobs(self) -> Iterator[tuple[Digest, bytes]]:
        """The tree blob first, then each distinct file blob, with their digests."""
        yield self.digest, self.blob
        seen: set[str] = set()
        for digest in self._digests.values():
            if digest.hash not in seen:
                seen.add(digest.hash)
                yield digest, self._blobs[digest.hash]

    def blob_data(self, digest: Digest) -> bytes | None:
        """The bytes of one of this tree's blobs (the tree's own included), else None."""
        if digest.hash == self.digest.hash:
            return self.blob
        return self._blobs.get(digest.hash)

    def without(self, name: str) -> ModuleTree:
        """This tree less the file `name` (itself if it has none), without hashing again.

        Remembered per name, so a tree reused with the same entry builds it once."""
        if name not in self._files:
            return self
        smaller = self._without.get(name)
        if smaller is None:
            smaller = ModuleTree.__new__(ModuleTree)
            files = {n: t for n, t in self._files.items() if n != name}
            digests = {n: d for n, d in self._digests.items() if n != name}
            blobs = {d.hash: self._blobs[d.hash] for d in digests.values()}
            smaller._assemble(files, digests, blobs)
            self._without[name] = smaller
        return smaller

    def __len__(self) -> int:
        return len(self._files)

    def __contains__(self, name: object) -> bool:
        return name in self._files

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ModuleTree) and other.digest == self.digest

    def __hash__(self) -> int:
        return hash(self.digest)

    def __repr__(self) -> str:
        return f"<ModuleTree {len(self)} files {self.digest}>"


def entry_in_tree(entry: str | os.PathLike[str], root: str | os.PathLike[str]) -> str | None:
    """The entry file's name inside the tree when it lies under `root`, else None."""
    try:
        return Path(entry).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return None
