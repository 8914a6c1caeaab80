"""What one worker holds of module texts, mirrored by the parent, and the pipe frame that
follows from it.

    engine's RunFrame (modules: path -> text, digests: path -> sha256)
        │
        ▼  SourceMirror.wire(frame)           the worker's store, exactly mirrored here
    pipe RunFrame: modules  = only texts too big to keep (sent inline, every time)
                   digests  = every file
                   sources  = digest -> text the worker lacks (then keeps)
                   forget   = digests the worker drops first (least recently used)

Why the parent decides: the worker keeps what the parent says and nothing else, so the
two never drift and the parent knows, without asking, which texts must travel. The store
is bounded by `capacity` bytes (Settings.worker_code_cache_bytes); a task's own files are
never evicted to make room for one another (what does not fit goes inline). A respawned
worker gets a new handle, hence an empty mirror, as its store is.

The transform stage's answers ride along: a prepared file's `code` (sucrase's output, or
a CommonJS file with `import(` renamed — typescript.js is one) is named by the digest of
that code, so a 9 MB compiler crosses the pipe once per worker. Those answers are the
same string objects from one task to the next (transforms.py caches them), so their
digests are memoized by identity, not re-hashed per task.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from zako_server.protocol import DoneEvent, RunFrame

# Strings whose digest is remembered by identity (their objects are kept alive here, so
# an id is never reused while its entry exists).
MEMO_ENTRIES = 4096


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


class DigestMemo:
    """SHA-256 of texts the server hands out again and again (one per pool), and the
    pipe form of the transform stage's answers (the same dict objects every task)."""

    def __init__(self, entries: int = MEMO_ENTRIES) -> None:
        self._entries = entries
        self._memo: OrderedDict[int, tuple[str, str]] = OrderedDict()
        self._answers: OrderedDict[int, Answer] = OrderedDict()

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
    """The exact list of texts one worker holds (digest -> bytes), least recent first."""

    def __init__(self, capacity: int, counters: CodeCacheCounters, memo: DigestMemo) -> None:
        self.capacity = capacity
        self.counters = counters
        self._memo = memo
        self._held: OrderedDict[str, int] = OrderedDict()
        self.bytes = 0

    def holds(self, digest: str) -> bool:
        return digest in self._held

    def held_bytes(self, digests: Any) -> int:
        """How many bytes of `digests` (an iterable) this worker already holds."""
        held = self._held
        return sum(held.get(d, 0) for d in digests)

    def finished(self, done: DoneEvent) -> None:
        """Take a task's done event: its compile figures, and digests the worker said it
        lacks (only a bug can cause that; they are forgotten here too)."""
        self.counters.compiled_hits += done.compiled_hits
        self.counters.compiled_misses += done.compiled_misses
        for digest in done.missing:
            self.bytes -= self._held.pop(digest, 0)

    def wire(self, frame: RunFrame) -> RunFrame:
        """The frame to write on this worker's pipe (the caller's frame is untouched)."""
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
        held = self._held
        # Touch first: every text this task needs moves to the recent end, so eviction
        # (from the old end) can never take one of them.
        for digest in needed:
            if digest in held:
                held.move_to_end(digest)
        sources: dict[str, str] = {}
        forget: list[str] = []
        inline: dict[str, str] = {}
        for path, text in frame.modules.items():
            if not self._place(digests[path], text, needed, sources, forget):
                inline[path] = text
        prepared = frame.prepared
        if answers:
            prepared = dict(prepared)
            for path, answer in answers.items():
                prepared[path] = self._answer(answer, needed, sources, forget)
        return dataclasses.replace(
            frame,
            modules=inline,
            digests=digests,
            sources=sources,
            forget=forget,
            prepared=prepared,
        )

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
        size = len(text.encode("utf-8", "surrogatepass")) if not text.isascii() else len(text)
        counters.source_misses += 1
        counters.source_bytes_sent += size
        held = self._held
        while self.bytes + size > self.capacity and held:
            oldest, oldest_size = next(iter(held.items()))
            if oldest in needed:  # everything left is this task's own
                break
            held.popitem(last=False)
            self.bytes -= oldest_size
            forget.append(oldest)
        if self.bytes + size > self.capacity:
            return False
        held[digest] = size
        self.bytes += size
        sources[digest] = text
        return True
