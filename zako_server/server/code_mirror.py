"""What one worker holds of module texts, mirrored by the parent, and the pipe frame that
follows from it.

    engine's RunFrame (modules: path -> text, digests: path -> sha256,
                       tree_files + tree_prepared: the task's ModuleTree, as a unit)
        │
        ▼  SourceMirror.wire(frame)           the worker's store, exactly mirrored here
    pipe RunFrame: modules    = only texts too big to keep (sent inline, every time)
                   digests    = every file beside the tree
                   tree       = the digest of the tree's pack (DigestMemo.pack)
                   sources    = digest -> text the worker lacks (then keeps); the pack's
                                text among them the first time this worker gets it
                   tree_texts = the pack's texts the worker holds under no other unit
                   forget     = units (a text, or a pack) the worker drops first (least
                                recently used)

Why the parent decides: the worker keeps what the parent says and nothing else, so the
two never drift and the parent knows, without asking, which texts must travel. The store
is bounded by `capacity` bytes (Settings.worker_code_cache_bytes); a task's own files are
never evicted to make room for one another (what does not fit goes inline). A respawned
worker gets a new handle, hence an empty mirror, as its store is.

A tree is one unit: its pack (the files' [path, digest] pairs and the transform answers
for them, one text) is held by digest like a text and holds every text it names, so a
repeated tree task costs this mirror one lookup and the frame one digest, whatever the
tree's size. A pack's size is its text plus all its texts (texts two units share are
counted twice: the store holds at most what the mirror counts). A tree too large for
the store travels file by file, as texts did before trees were units.

The transform stage's answers ride along: a prepared file's `code` (sucrase's output, or
a CommonJS file with `import(` renamed — typescript.js is one) is named by the digest of
that code, so a 9 MB compiler crosses the pipe once per worker. Those answers are the
same string objects from one task to the next (transforms.py caches them), so their
digests are memoized by identity, not re-hashed per task.
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import msgspec

from zako_server.protocol import DoneEvent, RunFrame

# Strings whose digest is remembered by identity (their objects are kept alive here, so
# an id is never reused while its entry exists).
MEMO_ENTRIES = 4096
# Packs remembered by the identity of their tree and answers.
PACK_ENTRIES = 16


@dataclass
class CodeCacheCounters:
    """The workers' code cache figures since start (StatsResponse.code_cache): summed
    over every worker the pool ran, so they outlive any one worker."""

    source_hits: int = 0
    source_misses: int = 0
    source_bytes_sent: int = 0
    compiled_hits: int = 0
    compiled_misses: int = 0


@dataclass(frozen=True)
class Answer:
    """A transform answer as the pipe can carry it: `entry` is `info` with its code
    named by `code_digest`; `text` is that entry's JSON, by `digest` when it is worth
    keeping (ENTRY_MIN_BYTES), so a large answer (typescript.js's export names: 111 kB)
    crosses the pipe once too."""

    info: dict[str, Any]
    entry: dict[str, Any]
    code: str | None
    code_digest: str | None
    text: str
    digest: str | None

    @property
    def digests(self) -> tuple[str, ...]:
        return tuple(d for d in (self.code_digest, self.digest) if d is not None)


# A prepared answer smaller than this goes inline: its digest would be half its size.
ENTRY_MIN_BYTES = 1024


def _size(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


@dataclass(frozen=True, eq=False)
class Pack:
    """A tree as the pipe carries it: `text` (by `digest`) is the JSON object
    {"files": [[path, digest], ...], "prepared": [[path, answer], ...]}, each answer with
    its code by "code_digest"; `texts` (digest -> text) are what it holds: every file's
    text and every answer's code. `size` counts them all with the pack's own text."""

    digest: str
    text: str
    texts: dict[str, str]
    size: int
    files: dict[str, str]  # path -> digest (the tree's)
    texts_by_path: dict[str, str]  # path -> text (the tree's), to send file by file
    prepared: dict[str, Any]  # path -> answer as the stage gave it (code inline)


class DigestMemo:
    """SHA-256 of texts the server hands out again and again (one per pool), and the
    pipe form of the transform stage's answers (the same dict objects every task)."""

    def __init__(self, entries: int = MEMO_ENTRIES) -> None:
        self._entries = entries
        self._memo: OrderedDict[int, tuple[str, str]] = OrderedDict()
        self._answers: OrderedDict[int, Answer] = OrderedDict()
        self._packs: OrderedDict[tuple[str, int], tuple[Any, Any, Pack]] = OrderedDict()

    def answer(self, info: dict[str, Any]) -> Answer:
        key = id(info)
        hit = self._answers.get(key)
        if hit is not None and hit.info is info:
            self._answers.move_to_end(key)
            return hit
        code = info.get("code")
        entry, code_digest = info, None
        if isinstance(code, str):
            code_digest = self.digest(code)
            entry = {k: v for k, v in info.items() if k != "code"} | {"code_digest": code_digest}
        else:
            code = None
        text = json.dumps(entry, ensure_ascii=False, separators=(",", ":"))
        digest = self.digest(text) if len(text) >= ENTRY_MIN_BYTES else None
        answer = Answer(info, entry, code, code_digest, text, digest)
        self._answers[key] = answer
        if len(self._answers) > self._entries:
            self._answers.popitem(last=False)
        return answer

    def pack(self, tree: Any, answers: dict[str, Any] | None) -> Pack:
        """The pack of a resolved tree (trees.TreeFiles) and the stage's answers for its
        files, built once per tree manifest and answers object: the answers are the same
        object from one task to the next while the stage's memo holds them, and a tree
        resolved again (after an eviction) has the same manifest, hence the same texts."""
        key = (tree.manifest_digest, id(answers))
        hit = self._packs.get(key)
        if hit is not None and hit[1] is answers:
            self._packs.move_to_end(key)
            return hit[2]
        files: dict[str, str] = tree.digests
        texts_by_path: dict[str, str] = tree.texts
        texts = {files[path]: text for path, text in texts_by_path.items()}
        entries = []
        for path, info in (answers or {}).items():
            code = info.get("code") if isinstance(info, dict) else None
            if isinstance(code, str):
                code_digest = self.digest(code)
                texts[code_digest] = code
                info = {k: v for k, v in info.items() if k != "code"} | {"code_digest": code_digest}
            entries.append([path, info])
        text = (
            '{"files":'
            + tree.tree.manifest
            + ',"prepared":'
            + json.dumps(entries, ensure_ascii=False, separators=(",", ":"))
            + "}"
        )
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        size = _size(text) + sum(_size(t) for t in texts.values())
        pack = Pack(digest, text, texts, size, files, texts_by_path, dict(answers or {}))
        self._packs[key] = (tree, answers, pack)
        if len(self._packs) > PACK_ENTRIES:
            self._packs.popitem(last=False)
        return pack

    def digest(self, text: str) -> str:
        key = id(text)
        hit = self._memo.get(key)
        if hit is not None and hit[0] is text:
            self._memo.move_to_end(key)
            return hit[1]
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
        self._memo[key] = (text, digest)
        if len(self._memo) > self._entries:
            self._memo.popitem(last=False)
        return digest


class SourceMirror:
    """The exact list of units one worker holds, least recent first: texts (digest ->
    bytes) and packs (digest -> bytes of the pack and all it holds)."""

    def __init__(self, capacity: int, counters: CodeCacheCounters, memo: DigestMemo) -> None:
        self.capacity = capacity
        self.counters = counters
        self._memo = memo
        self._held: OrderedDict[str, int] = OrderedDict()
        self._packs: dict[str, Pack] = {}  # the held units that are packs
        self._refs: dict[str, int] = {}  # text digest -> held packs holding it
        self.bytes = 0
        self._pinned: frozenset[str] | None = None  # during wire(): see there

    def holds(self, digest: str) -> bool:
        return digest in self._held

    def held_bytes(self, digests: Any) -> int:
        """How many bytes of `digests` (an iterable of texts and packs) this worker holds."""
        held = self._held
        return sum(held.get(d, 0) for d in digests)

    def finished(self, done: DoneEvent) -> None:
        """Take a task's done event: its compile figures, and digests the worker said it
        lacks (only a bug can cause that; they are forgotten here too, with any pack
        holding them)."""
        self.counters.compiled_hits += done.compiled_hits
        self.counters.compiled_misses += done.compiled_misses
        for digest in done.missing:
            if digest in self._refs:
                for name, pack in list(self._packs.items()):
                    if digest in pack.texts:
                        self._drop(name)
            if digest in self._held:
                self._drop(digest)

    def pack_of(self, frame: RunFrame) -> Pack | None:
        """The pack of the frame's tree (None: it has none)."""
        if frame.tree_files is None:
            return None
        return self._memo.pack(frame.tree_files, frame.tree_prepared)

    def wire(self, frame: RunFrame, pinned: frozenset[str] | None = None) -> RunFrame:
        """The frame to write on this worker's pipe (the caller's frame is untouched).
        `pinned`: the units (`units_of`) of frames the worker still holds, running or
        queued (slots.Slot); it applies frames in order as they arrive, so
        evicting one of those units for this frame would take it from a task yet to run."""
        self._pinned = pinned
        try:
            return self._wire(frame)
        finally:
            self._pinned = None

    def _wire(self, frame: RunFrame) -> RunFrame:
        pack = self.pack_of(frame)
        if pack is not None and not self._fits(pack, frame):
            frame = _flatten(frame, pack)
            pack = None
        digests = dict(frame.digests)
        for path, text in frame.modules.items():
            if path not in digests:
                digests[path] = self._memo.digest(text)
        answers = {
            path: self._memo.answer(info)
            for path, info in frame.prepared.items()
            if isinstance(info, dict)
        }
        needed = {*digests.values()}
        for answer in answers.values():
            needed.update(answer.digests)
        if pack is not None:
            needed.add(pack.digest)
        held = self._held
        # Touch first: every unit this task needs moves to the recent end, so eviction
        # (from the old end) can never take one of them.
        for digest in needed:
            if digest in held:
                held.move_to_end(digest)
        sources: dict[str, str] = {}
        forget: list[str] = []
        tree_texts: dict[str, str] = {}
        if pack is not None:
            self._place_pack(pack, needed, sources, forget, tree_texts)
        inline: dict[str, str] = {}
        for path, text in frame.modules.items():
            if not self._place(digests[path], text, needed, sources, forget):
                inline[path] = text
        prepared = frame.prepared
        if answers:
            prepared = dict(prepared)
            for path, answer in answers.items():
                prepared[path] = self._answer(answer, needed, sources, forget)
        return msgspec.structs.replace(
            frame,
            modules=inline,
            digests=digests,
            sources=sources,
            forget=forget,
            prepared=prepared,
            tree=None if pack is None else pack.digest,
            tree_texts=tree_texts,
            tree_files=None,
            tree_prepared=None,
        )

    def _fits(self, pack: Pack, frame: RunFrame) -> bool:
        """Whether the pack is held, or fits beside the task's own held texts."""
        if pack.digest in self._held:
            return True
        held = self._held
        own = sum(held.get(d, 0) for d in {*frame.digests.values()})
        return pack.size + own <= self.capacity

    def _place_pack(
        self,
        pack: Pack,
        needed: set[str],
        sources: dict[str, str],
        forget: list[str],
        tree_texts: dict[str, str],
    ) -> None:
        """Make the worker hold `pack` (it fits: `_fits`): its text in `sources`, and in
        `tree_texts` those of its texts no held pack holds yet."""
        counters = self.counters
        if pack.digest in self._held:
            counters.source_hits += 1
            return
        self._make_room(pack.size, needed, forget)
        self._held[pack.digest] = pack.size
        self._packs[pack.digest] = pack
        self.bytes += pack.size
        sources[pack.digest] = pack.text
        counters.source_misses += 1
        counters.source_bytes_sent += _size(pack.text)
        refs = self._refs
        for digest, text in pack.texts.items():
            count = refs.get(digest, 0)
            if not count:
                tree_texts[digest] = text
                counters.source_misses += 1
                counters.source_bytes_sent += _size(text)
            refs[digest] = count + 1

    def _make_room(self, size: int, needed: set[str], forget: list[str]) -> None:
        """Evict least recently used units, never one this task needs, until `size` more
        bytes fit (or only the task's own are left). Units pinned by the frames the
        worker still holds are passed over: they may be older than others."""
        held = self._held
        pinned = self._pinned
        if not pinned:
            while self.bytes + size > self.capacity and held:
                oldest = next(iter(held))
                if oldest in needed:  # everything left is this task's own
                    break
                self._drop(oldest)
                forget.append(oldest)
            return
        for digest in [d for d in held if d not in pinned]:
            if self.bytes + size <= self.capacity or digest in needed:
                break
            self._drop(digest)
            forget.append(digest)

    def _drop(self, digest: str) -> None:
        self.bytes -= self._held.pop(digest, 0)
        pack = self._packs.pop(digest, None)
        if pack is not None:
            refs = self._refs
            for text_digest in pack.texts:
                count = refs[text_digest] - 1
                if count:
                    refs[text_digest] = count
                else:
                    del refs[text_digest]

    def _answer(
        self, answer: Answer, needed: set[str], sources: dict[str, str], forget: list[str]
    ) -> dict[str, Any]:
        """A prepared answer as it goes on the pipe: by digest when the worker keeps it,
        its code by digest when only that fits, else as it is."""
        if answer.code_digest is not None:
            assert answer.code is not None
            if not self._place(answer.code_digest, answer.code, needed, sources, forget):
                return answer.info
        if answer.digest is not None and self._place(
            answer.digest, answer.text, needed, sources, forget
        ):
            return {"entry_digest": answer.digest}
        return answer.entry

    def _place(
        self,
        digest: str,
        text: str,
        needed: set[str],
        sources: dict[str, str],
        forget: list[str],
    ) -> bool:
        """Whether the worker will hold `digest` for this task (False: send it inline)."""
        counters = self.counters
        if digest in self._held:
            if digest not in sources:
                counters.source_hits += 1
            return True
        size = _size(text)
        counters.source_misses += 1
        counters.source_bytes_sent += size
        self._make_room(size, needed, forget)
        if self.bytes + size > self.capacity:
            return False
        self._held[digest] = size
        self.bytes += size
        sources[digest] = text
        return True


def units_of(wired: RunFrame) -> frozenset[str]:
    """The units a wired frame has the worker hold for it: its files' texts, its tree's
    pack and the transform answers it names by digest."""
    units = set(wired.digests.values())
    if wired.tree is not None:
        units.add(wired.tree)
    for info in wired.prepared.values():
        if isinstance(info, dict):
            for key in ("code_digest", "entry_digest"):
                digest = info.get(key)
                if isinstance(digest, str):
                    units.add(digest)
    return frozenset(units)


def _flatten(frame: RunFrame, pack: Pack) -> RunFrame:
    """A task whose tree does not fit the worker's store: its files travel one by one,
    as the task's own (the worker keeps what fits, the rest goes inline)."""
    return msgspec.structs.replace(
        frame,
        modules={**frame.modules, **pack.texts_by_path},
        digests={**frame.digests, **pack.files},
        prepared={**frame.prepared, **pack.prepared},
        tree_files=None,
        tree_prepared=None,
    )


def without_tree(frame: RunFrame) -> RunFrame:
    """The frame with its tree's files as its own (for a worker without a mirror)."""
    tree = frame.tree_files
    if tree is None:
        return frame
    return msgspec.structs.replace(
        frame,
        modules={**frame.modules, **tree.texts},
        digests={**frame.digests, **tree.digests},
        prepared={**frame.prepared, **(frame.tree_prepared or {})},
        tree_files=None,
        tree_prepared=None,
    )
