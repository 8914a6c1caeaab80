"""Which files of the vendored npm packages every V8 instance receives (vendor.py).

The set comes from the packages' manifests, never from reading their source: ROOTS and
their `dependencies`, each package's `main` plus the `.js`/`.json` its `files` field
publishes, less its `module` (ES) build. Checked on a small generated node_modules tree
and on the installed one.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from zako_server.worker.runtime import vendor


def _package(root: Path, name: str, manifest: dict[str, object], files: dict[str, str]) -> None:
    (root / name).mkdir(parents=True)
    (root / name / "package.json").write_text(json.dumps({"name": name, **manifest}))
    for path, text in files.items():
        (root / name / path).parent.mkdir(parents=True, exist_ok=True)
        (root / name / path).write_text(text)


def test_files_come_from_manifests(tmp_path, monkeypatch):
    root = tmp_path / "node_modules"
    for name in vendor.ROOTS:
        deps = {"dep": "1", "tr46": "5"} if name == "whatwg-url" else {}
        _package(root, name, {"dependencies": deps}, {"index.js": f"// {name}", "test/t.js": "x"})
    _package(
        root,
        "dep",
        {"main": "lib/main", "files": ["lib/", "extra.js", "es/*.mjs"], "module": "lib/es.js"},
        {
            "lib/main.js": "a",
            "lib/deep/more.js": "b",
            "lib/data.json": "{}",
            "lib/es.js": "export {}",
            "lib/README.md": "r",
            "extra.js": "c",
            "es/x.mjs": "d",
            "test/t.js": "never",
        },
    )
    _package(root, "unused", {}, {"index.js": "never"})
    _package(root, "punycode", {"main": "punycode.js"}, {"punycode.js": "p"})
    monkeypatch.setattr(vendor, "node_modules", lambda: root)
    got = vendor.bundle.__wrapped__()
    assert got["mains"]["dep"] == "dep/lib/main.js"
    assert sorted(p for p in got["files"] if p.startswith("dep/")) == [
        "dep/extra.js",
        "dep/lib/data.json",
        "dep/lib/deep/more.js",
        "dep/lib/main.js",
    ]
    # A package without `files` is its main alone (its tests are published too).
    assert "buffer/index.js" in got["files"] and "buffer/test/t.js" not in got["files"]
    assert not any(p.startswith("unused/") for p in got["files"])
    # tr46 is the shim, and brings the package it requires.
    assert got["mains"]["tr46"] == "tr46/tr46.js" and "punycode" in got["mains"]


def test_a_missing_package_says_make_setup(tmp_path, monkeypatch):
    monkeypatch.setattr(vendor, "node_modules", lambda: tmp_path)
    with pytest.raises(vendor.VendorMissing, match="make setup"):
        vendor.bundle.__wrapped__()


def test_installed_bundle_has_every_main_and_no_es_build():
    got = vendor.bundle()
    assert set(got["mains"]) >= {*vendor.ROOTS, "base64-js", "ieee754", "punycode"}
    assert all(path in got["files"] for path in got["mains"].values())
    assert "punycode/punycode.es6.js" not in got["files"]
