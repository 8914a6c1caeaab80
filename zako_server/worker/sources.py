"""The module texts a worker holds by digest, and what each of its isolates holds of them.

    RunFrame.forget / .sources / .tree_texts ──SourceStore.receive()──▶ units: texts and
                                                tree packs (digest -> text, this process)
    task: files (path, digest) + tree pack ──SourceStore.feed()──▶ texts the isolate
                                                lacks, and digests it must drop (the
                                                store dropped them)

The parent mirrors this store exactly (server/code_mirror.py) and is the only one that
decides what enters or leaves it, so the worker never evicts on its own. Frames are taken
in the order they arrive, before the run queue, so the store matches the parent's
mirror at every frame.

A unit is a text, or a tree's pack (RunFrame.tree): the pack is parsed once per worker
(TreePack) and holds every text it names, so a task naming a held tree costs a lookup
here, whatever the tree's size. A text stays while some unit holds it (a count per
digest: two trees, or a tree and a task's own file, may share one).

Each isolate keeps its own copy of the texts it was given (V8 strings: handing a 9 MB
text to V8 costs its encoding and parse as a literal, so it happens once per isolate,
not per task), and modules.js keeps, in a warm isolate, the wrapper V8 compiled from each
one. A pack goes to an isolate whole, once (modules.js parses it once per isolate too).
What the store forgets, every live isolate forgets with its next task, so an isolate's
copy never outgrows the store. A text sent inline (too big for the store) goes to the
isolate for that task only.
"""

from __future__ import annotations

import hashlib
import json
import sys
import weakref
from collections.abc import Iterable
from typing import Any, NamedTuple

from zako_server.protocol import RunFrame


def digest_of(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


class Resolved(NamedTuple):
    """A task's files as the worker runs them: path -> digest, texts that came inline
    (digest -> text), digests it lacks, the transform answers (path -> answer, those
    kept by digest parsed) and which answers came by digest (path -> digest)."""

    digests: dict[str, str]
    inline: dict[str, str]
    missing: list[str]
    prepared: dict[str, Any]
    entries: dict[str, str]
    tree: TreePack | None = None


class TreePack(NamedTuple):
    """A tree's pack as this worker holds it (its text is in the store by `digest`):
    path -> digest, path -> transform answer, every digest the pack holds (its own
    first), and those an isolate needs (`_wanted`'s rule, applied once per pack)."""

    digest: str
    files: dict[str, str]
    prepared: dict[str, Any]
    holds: tuple[str, ...]
    wanted: tuple[str, ...]

    @classmethod
    def parse(cls, digest: str, text: str) -> TreePack:
        """Raises ValueError (or TypeError) for a text that is not a pack."""
        raw = json.loads(text)
        files = {str(path): str(d) for path, d in raw["files"]}
        prepared = {str(path): info for path, info in raw["prepared"]}
        if not all(isinstance(info, dict) for info in prepared.values()):
            raise ValueError(f"pack {digest[:12]}: an answer is not an object")
        codes = _code_digests(prepared)
        wanted = [digest, *codes]
        for path, file_digest in files.items():
            info = prepared.get(path)
            if info is None or ("code" not in info and "code_digest" not in info):
                wanted.append(file_digest)
        holds = dict.fromkeys((digest, *files.values(), *codes))
        return cls(digest, files, prepared, tuple(holds), tuple(dict.fromkeys(wanted)))


class Held:
    """What one isolate holds (digests, and the packs it was given whole) and what it
    must drop with its next task."""

    __slots__ = ("__weakref__", "digests", "drop", "packs")

    def __init__(self) -> None:
        self.digests: set[str] = set()
        self.drop: set[str] = set()
        self.packs: set[str] = set()


class SourceStore:
    """digest -> text, exactly as the parent's mirror of this worker says."""

    def __init__(self) -> None:
        self.texts: dict[str, str] = {}
        self.packs: dict[str, TreePack] = {}
        self._refs: dict[str, int] = {}  # digest -> units holding its text
        self._isolates: weakref.WeakSet[Held] = weakref.WeakSet()
        self._answers: dict[str, dict[str, Any]] = {}  # parsed prepared answers by digest

    def receive(self, frame: RunFrame) -> None:
        """Apply a run frame's `forget` then `sources` (at arrival, in frame order); a
        source that is the frame's `tree` is a pack, holding its texts (`tree_texts`).
        A pack that does not parse is not held: the task finds it missing."""
        for unit in frame.forget:
            pack = self.packs.pop(unit, None)
            for digest in pack.holds if pack is not None else (unit,):
                self._release(digest)
        texts, refs = self.texts, self._refs
        tree = frame.tree
        for digest, text in frame.sources.items():
            if digest == tree:
                self._hold_pack(digest, text, frame.tree_texts)
                continue
            texts[digest] = text
            refs[digest] = refs.get(digest, 0) + 1

    def _hold_pack(self, digest: str, text: str, given: dict[str, str]) -> None:
        try:
            pack = TreePack.parse(digest, text)
        except (ValueError, TypeError, KeyError) as exc:  # a parent's bug, as below
            print(f"zako worker: pack {digest[:12]} is malformed: {exc!r}", file=sys.stderr)
            return
        texts, refs = self.texts, self._refs
        if any(h != digest and h not in given and h not in texts for h in pack.holds):
            return  # a parent's bug: the task finds the pack missing, the parent drops it
        texts[digest] = text
        for held in pack.holds:
            found = given.get(held)
            if found is not None:
                texts[held] = found
            refs[held] = refs.get(held, 0) + 1
        self.packs[digest] = pack

    def _release(self, digest: str) -> None:
        """One unit less holds `digest`; the last one gone, every isolate drops it."""
        count = self._refs.pop(digest, 0) - 1
        if count > 0:
            self._refs[digest] = count
            return
        self._answers.pop(digest, None)
        if self.texts.pop(digest, None) is not None:
            for held in self._isolates:
                held.packs.discard(digest)
                if digest in held.digests:
                    held.digests.discard(digest)
                    held.drop.add(digest)

    def track(self, held: Held) -> None:
        self._isolates.add(held)

    def resolve(self, frame: RunFrame) -> Resolved:
        """The task's files and transform answers, from the frame and this store.
        Inline texts without a digest get one here."""
        digests = dict(frame.digests)
        inline: dict[str, str] = {}
        for path, text in frame.modules.items():
            digest = digests.get(path)
            if digest is None:
                digest = digests[path] = digest_of(text)
            inline[digest] = text
        prepared: dict[str, Any] = {}
        entries: dict[str, str] = {}
        missing: list[str] = []
        for path, info in frame.prepared.items():
            digest = info.get("entry_digest") if isinstance(info, dict) else None
            if not isinstance(digest, str):
                prepared[path] = info
                continue
            answer = self.answer(digest)
            if answer is None:
                missing.append(digest)
            else:
                prepared[path], entries[path] = answer, digest
        missing += [
            d for d in {*digests.values(), *_code_digests(prepared)}
            if d not in inline and d not in self.texts
        ]  # fmt: skip
        tree = None
        if frame.tree is not None:
            tree = self.packs.get(frame.tree)
            if tree is None:
                missing.append(frame.tree)
        return Resolved(digests, inline, missing, prepared, entries, tree)

    def answer(self, digest: str) -> dict[str, Any] | None:
        """A prepared answer kept by digest, parsed once (None: not held)."""
        found = self._answers.get(digest)
        if found is None:
            text = self.texts.get(digest)
            if text is None:
                return None
            found = json.loads(text)
            if not isinstance(found, dict):
                raise ValueError(f"prepared answer {digest[:12]} is not an object")
            self._answers[digest] = found
        return found

    def feed(
        self,
        held: Held,
        digests: Iterable[str],
        inline: dict[str, str],
        tree: TreePack | None = None,
    ) -> tuple[list[tuple[str, str, bool]], list[str]]:
        """What to hand an isolate for a task: [(digest, text, keep)] it lacks, and the
        digests it must drop first. `keep`: the isolate keeps the text past the task
        (only texts of the store: an isolate's copy never outgrows it). A tree's pack
        goes whole, with the texts it holds that the isolate lacks, once per isolate:
        then a task naming it adds nothing here."""
        self.track(held)
        drop = sorted(held.drop)
        held.drop.clear()
        give: list[tuple[str, str, bool]] = []
        texts = self.texts
        seen: set[str] = set()
        if tree is not None and tree.digest not in held.packs:
            held.packs.add(tree.digest)
            digests = (*tree.wanted, *digests)
        for digest in digests:
            if digest in held.digests or digest in seen:
                continue
            seen.add(digest)
            text = texts.get(digest)
            if text is not None:
                held.digests.add(digest)
                give.append((digest, text, True))
            else:
                give.append((digest, inline[digest], False))
        return give, drop


def _code_digests(prepared: dict[str, Any]) -> list[str]:
    return [
        info["code_digest"]
        for info in prepared.values()
        if isinstance(info, dict) and isinstance(info.get("code_digest"), str)
    ]


def needed(digests: dict[str, str], prepared: dict[str, Any]) -> list[str]:
    """Every digest a task's isolate must hold: its files' and its prepared code's."""
    return [*digests.values(), *_code_digests(prepared)]
