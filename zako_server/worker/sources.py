"""The module texts a worker holds by digest, and what each of its isolates holds of them.

    RunFrame.forget / .sources ──SourceStore.receive()──▶ digest -> text (this process)
    task: files (path, digest) ──Feed.for_task()──▶ texts the isolate lacks, and digests
                                                    it must drop (the store dropped them)

The parent mirrors this store exactly (server/code_mirror.py) and is the only one that
decides what enters or leaves it, so the worker never evicts on its own. Frames are taken
in the order they arrive, before the run queue, so the store matches the parent's
mirror at every frame.

Each isolate keeps its own copy of the texts it was given (V8 strings: handing a 9 MB
text to V8 costs its encoding and parse as a literal, so it happens once per isolate,
not per task), and modules.js keeps, in a warm isolate, the wrapper V8 compiled from each
one. What the store forgets, every live isolate forgets with its next task, so an
isolate's copy never outgrows the store. A text sent inline (too big for the store) goes
to the isolate for that task only.
"""

from __future__ import annotations

import hashlib
import json
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


class Held:
    """What one isolate holds (digests) and what it must drop with its next task."""

    __slots__ = ("__weakref__", "digests", "drop")

    def __init__(self) -> None:
        self.digests: set[str] = set()
        self.drop: set[str] = set()


class SourceStore:
    """digest -> text, exactly as the parent's mirror of this worker says."""

    def __init__(self) -> None:
        self.texts: dict[str, str] = {}
        self._isolates: weakref.WeakSet[Held] = weakref.WeakSet()
        self._answers: dict[str, dict[str, Any]] = {}  # parsed prepared answers by digest

    def receive(self, frame: RunFrame) -> None:
        """Apply a run frame's `forget` then `sources` (at arrival, in frame order)."""
        texts = self.texts
        for digest in frame.forget:
            self._answers.pop(digest, None)
            if texts.pop(digest, None) is not None:
                for held in self._isolates:
                    if digest in held.digests:
                        held.digests.discard(digest)
                        held.drop.add(digest)
        for digest, text in frame.sources.items():
            texts[digest] = text

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
        return Resolved(digests, inline, missing, prepared, entries)

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
        self, held: Held, digests: Iterable[str], inline: dict[str, str]
    ) -> tuple[list[tuple[str, str, bool]], list[str]]:
        """What to hand an isolate for a task: [(digest, text, keep)] it lacks, and the
        digests it must drop first. `keep`: the isolate keeps the text past the task
        (only texts of the store: an isolate's copy never outgrows it)."""
        self.track(held)
        drop = sorted(held.drop)
        held.drop.clear()
        give: list[tuple[str, str, bool]] = []
        texts = self.texts
        seen: set[str] = set()
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
