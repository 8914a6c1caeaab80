"""ModuleTree: the digests a tree travels by are the content's and nothing else's."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from zako_sdk import Digest, ModuleTree, TaskSpec
from zako_sdk._base import prepare
from zako_sdk.proto.zako.v1 import cas_pb2

FILES = {
    "package.json": '{"name": "p"}',
    "lib/b.js": "module.exports = 'b';",
    "lib/a.js": "module.exports = require('./b');",
    "é.js": "module.exports = 'é';",
    "node_modules/x/index.js": "module.exports = 'b';",  # same text as lib/b.js
}


def test_each_file_is_named_by_the_sha256_of_its_utf8_text():
    tree = ModuleTree(FILES)
    for name, text in FILES.items():
        data = text.encode("utf-8")
        assert tree.entries[name] == Digest(hashlib.sha256(data).hexdigest(), len(data))


def test_the_blob_is_a_module_tree_sorted_by_utf8_name_each_name_once():
    tree = ModuleTree(FILES)
    parsed = cas_pb2.ModuleTree.FromString(tree.blob)
    names = [entry.name for entry in parsed.files]
    assert names == sorted(FILES, key=lambda name: name.encode("utf-8"))
    assert len(set(names)) == len(names)
    assert tree.digest == Digest.of(tree.blob)
    # Python's str order and UTF-8 byte order differ past the BMP; the bytes rule.
    odd = ModuleTree({"\U0001f600.js": "1", "\ufb01.js": "2"})
    parsed_odd = cas_pb2.ModuleTree.FromString(odd.blob)
    assert [e.name for e in parsed_odd.files] == ["\ufb01.js", "\U0001f600.js"]


def test_the_digest_is_deterministic_and_independent_of_insertion_order():
    forward = ModuleTree(FILES)
    backward = ModuleTree(dict(reversed(list(FILES.items()))))
    assert forward.blob == backward.blob and forward.digest == backward.digest
    assert forward == backward and hash(forward) == hash(backward)


def test_a_pinned_digest_so_other_clients_can_agree():
    # The blob's bytes are the canonical proto encoding of the sorted entries; a change
    # here would make every client's trees (and the server's cached results) miss.
    tree = ModuleTree({"a.js": "1"})
    one = hashlib.sha256(b"1").hexdigest()
    digest = b"\x0a\x40" + one.encode() + b"\x10\x01"  # hash = 1, size_bytes = 2
    entry = b"\x0a\x04a.js" + b"\x12" + bytes([len(digest)]) + digest  # name = 1, digest = 2
    expected = b"\x0a" + bytes([len(entry)]) + entry  # files = 1
    assert tree.blob == expected


def test_any_change_of_content_or_name_changes_the_digest():
    base = ModuleTree(FILES).digest
    assert ModuleTree({**FILES, "lib/a.js": "module.exports = 2;"}).digest != base
    renamed = {("lib/c.js" if k == "lib/a.js" else k): v for k, v in FILES.items()}
    assert ModuleTree(renamed).digest != base


def test_same_digest_from_a_dict_and_from_the_directory(tmp_path: Path):
    for name, text in FILES.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text, encoding="utf-8")
    (tmp_path / "logo.png").write_bytes(b"\x89PNG\xff\xfe")  # not text: left out
    assert ModuleTree.of(tmp_path).digest == ModuleTree.of(dict(FILES)).digest
    assert ModuleTree.from_directory(tmp_path) == ModuleTree(FILES)


def test_identical_files_are_one_blob():
    tree = ModuleTree(FILES)
    digests = [digest for digest, _ in tree.blobs()]
    assert digests[0] == tree.digest  # the tree blob first
    assert len(digests) == 1 + len(set(FILES.values()))
    assert tree.size_bytes == len(tree.blob) + sum(len(t.encode()) for t in set(FILES.values()))


def test_without_drops_one_file_and_hashes_nothing_again():
    tree = ModuleTree(FILES)
    smaller = tree.without("lib/a.js")
    assert "lib/a.js" not in smaller and len(smaller) == len(FILES) - 1
    assert smaller.digest == ModuleTree({k: v for k, v in FILES.items() if k != "lib/a.js"}).digest
    assert tree.without("lib/a.js") is smaller  # remembered
    assert tree.without("absent.js") is tree


def test_a_prebuilt_tree_is_used_as_is_and_the_entry_leaves_it():
    tree = ModuleTree({**FILES, "main.js": "module.exports = 1;"})
    prepared = prepare(
        TaskSpec("module.exports = 1;", modules=tree, entry_name="main.js"), default_timeout=None
    )
    assert prepared.tree is tree.without("main.js")
    assert prepared.task.tree.hash == ModuleTree(FILES).digest.hash
    assert prepared.task.tree.size_bytes == len(prepared.tree.blob)
    assert not prepared.task.modules  # the files go by digest, not inline


def test_no_modules_no_tree():
    assert prepare(TaskSpec("1", modules={}), default_timeout=None).tree is None
    only_entry = prepare(TaskSpec("1", modules={"main.js": "1"}), default_timeout=None)
    assert only_entry.tree is None and not only_entry.task.HasField("tree")


def test_sources_must_be_text():
    with pytest.raises(TypeError):
        ModuleTree({"a.js": b"bytes"})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match="Unicode"):
        ModuleTree({"a.js": "\ud800"})


def test_cache_policy_names():
    assert prepare(TaskSpec("1", cache="skip"), default_timeout=None).task.cache == 3
    assert not prepare(TaskSpec("1"), default_timeout=None).task.cache  # the server's default
    with pytest.raises(ValueError, match="cache policy"):
        prepare(TaskSpec("1", cache="always"), default_timeout=None)  # type: ignore[arg-type]
