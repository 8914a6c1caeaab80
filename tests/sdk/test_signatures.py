"""The two faces of the client and the task options agree, by construction and by test.

`Client` forwards every call to `AsyncClient`; nothing but these checks stops a keyword
added to one face from missing on the other, or TaskOptions (the keyword options of
`run`/`run_unary`/`submit`) from drifting away from the TaskSpec fields they become.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing

import pytest

from zako_sdk import AsyncClient, Client, SyncTaskHandle, TaskHandle, TaskOptions, TaskSpec

# Where the faces differ on purpose: the sync one returns its own handle and closes
# without awaiting.
_SYNC_NAME = {"aclose": "close"}
_SYNC_RETURN = {"TaskHandle": "SyncTaskHandle"}


def _methods(cls: type) -> set[str]:
    return {
        name
        for name, member in vars(cls).items()
        if not name.startswith("_") and inspect.isfunction(member)
    }


def test_every_async_method_has_a_sync_twin_and_no_more():
    assert {_SYNC_NAME.get(name, name) for name in _methods(AsyncClient)} == _methods(Client)


@pytest.mark.parametrize("name", sorted(_methods(AsyncClient)))
def test_sync_signature_equals_its_async_twins(name):
    async_sig = inspect.signature(getattr(AsyncClient, name))
    sync_sig = inspect.signature(getattr(Client, _SYNC_NAME.get(name, name)))
    assert list(sync_sig.parameters.values()) == list(async_sig.parameters.values())
    expected = async_sig.return_annotation
    assert sync_sig.return_annotation == _SYNC_RETURN.get(expected, expected)


def test_the_constructors_take_the_same_options():
    assert inspect.signature(Client) == inspect.signature(AsyncClient)


@pytest.mark.parametrize("name", ["run", "run_unary", "submit"])
def test_task_methods_take_the_task_options(name):
    parameters = inspect.signature(getattr(AsyncClient, name)).parameters
    assert parameters["options"].kind is inspect.Parameter.VAR_KEYWORD
    assert parameters["options"].annotation == "Unpack[TaskOptions]"


def test_task_options_are_the_task_spec_fields_after_source():
    fields = typing.get_type_hints(TaskSpec)
    assert dataclasses.fields(TaskSpec)[0].name == "source"
    del fields["source"]
    # Same names, same order, same resolved types.
    assert list(typing.get_type_hints(TaskOptions).items()) == list(fields.items())
    assert TaskOptions.__required_keys__ == frozenset()  # every option has TaskSpec's default


def test_sync_handles_expose_what_async_handles_do():
    def reads(cls: type) -> set[str]:
        return {name for name, member in vars(cls).items() if isinstance(member, property)}

    assert reads(TaskHandle) == reads(SyncTaskHandle)
    assert _methods(TaskHandle) == _methods(SyncTaskHandle)
