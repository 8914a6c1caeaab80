"""Keep `zako_sdk.__all__` complete and sorted (as httpx does for its own)."""

from __future__ import annotations

import types

import zako_sdk
from zako_sdk import errors, models


def test_all_exports_every_public_name():
    # Submodules become attributes once imported anywhere; they are not API names.
    public = {
        name
        for name in dir(zako_sdk)
        if not name.startswith("_") and not isinstance(getattr(zako_sdk, name), types.ModuleType)
    }
    assert public == set(zako_sdk.__all__)


def test_all_is_sorted():
    # ruff's RUF022 order: CONSTANTS, then Classes, then functions, each alphabetical.
    def key(name: str) -> tuple[int, str]:
        return (0 if name.isupper() else 1 if name[0].isupper() else 2, name)

    assert zako_sdk.__all__ == sorted(zako_sdk.__all__, key=key)


def test_every_error_class_is_reexported():
    for name in errors.__all__:
        if isinstance(getattr(errors, name), type):
            assert name in zako_sdk.__all__, name


def test_every_model_is_reexported():
    missing = set(models.__all__) - set(zako_sdk.__all__) - {"ContextName"}
    assert not missing
