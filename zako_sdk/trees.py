"""A directory as a task's module tree: `modules=Path("project")` and `zako run --modules`.

The server resolves modules as Node does over the tree it is sent (node_modules,
package.json, ES modules, TypeScript), so a project folder goes as it is on disk: every
file, by its path relative to the folder. Two kinds of file are left out, because Node
would never load them as modules: files that are not UTF-8 text (images, native addons,
WebAssembly: a task's modules are strings) and what is only tooling (`.git/`, npm's
`node_modules/.bin/` links). Symbolic links to files are followed; to directories not
(a link cycle would never end).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

SKIPPED_DIRECTORIES = frozenset({".git", ".bin"})


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


def module_tree(
    modules: Mapping[str, str] | str | os.PathLike[str] | None,
) -> Mapping[str, str] | None:
    """A task's `modules` argument as the name -> source map the wire carries."""
    if modules is None or isinstance(modules, Mapping):
        return modules
    return pack_directory(modules)


def entry_in_tree(entry: str | os.PathLike[str], root: str | os.PathLike[str]) -> str | None:
    """The entry file's name inside the tree when it lies under `root`, else None."""
    try:
        return Path(entry).resolve().relative_to(Path(root).resolve()).as_posix()
    except ValueError:
        return None
