"""The type stubs of the extension module (_native.pyi) describe what the module really has."""

from __future__ import annotations

import ast
import inspect
import pathlib

import kinesis_rs
import kinesis_rs._native as native

STUB = pathlib.Path(native.__file__).with_name("_native.pyi")
# Dunders a stub declares because callers use them; the others (repr, ...) need no stub.
DECLARED_DUNDERS = {"__init__", "__enter__", "__exit__", "__getitem__", "__await__"}


def stub_classes() -> dict[str, dict[str, ast.FunctionDef]]:
    tree = ast.parse(STUB.read_text())
    return {
        node.name: {
            item.name: item for item in node.body if isinstance(item, ast.FunctionDef)
        }
        for node in tree.body
        if isinstance(node, ast.ClassDef)
    }


def runtime_classes() -> dict[str, type]:
    return {
        name: value
        for name, value in vars(native).items()
        if isinstance(value, type) and not name.startswith("_")
    }


def stub_parameters(function: ast.FunctionDef) -> list[str]:
    args = function.args
    names = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
    if args.vararg:
        names.append("*" + args.vararg.arg)
    if args.kwarg:
        names.append("**" + args.kwarg.arg)
    return [n for n in names if n != "self"]


def runtime_parameters(signature: inspect.Signature) -> list[str]:
    names = []
    for parameter in signature.parameters.values():
        if parameter.name == "self":
            continue
        prefix = {
            inspect.Parameter.VAR_POSITIONAL: "*",
            inspect.Parameter.VAR_KEYWORD: "**",
        }.get(parameter.kind, "")
        names.append(prefix + parameter.name)
    return names


def test_the_stub_has_every_class_of_the_module_and_no_other():
    assert STUB.exists(), STUB
    assert set(stub_classes()) == set(runtime_classes())
    # Everything the package re-exports from the module is typed.
    exported = {name for name in kinesis_rs.__all__ if hasattr(native, name)}
    assert exported <= set(stub_classes())


def test_each_class_has_the_stubbed_members_and_no_other_public_one():
    stubs = stub_classes()
    for name, cls in runtime_classes().items():
        declared = set(stubs[name])
        public = {m for m in dir(cls) if not m.startswith("_")}
        assert {m for m in declared if not m.startswith("_")} == public, name
        for dunder in declared & DECLARED_DUNDERS - {"__init__"}:
            assert hasattr(cls, dunder), f"{name}.{dunder}"


def test_parameters_match_where_the_module_reports_a_signature():
    compared = 0
    stubs = stub_classes()
    for name, cls in runtime_classes().items():
        for member, function in stubs[name].items():
            target = cls if member == "__init__" else getattr(cls, member)
            if isinstance(target, property) or not callable(target):
                continue
            try:
                signature = inspect.signature(target)
            except (TypeError, ValueError):
                continue
            if member == "__init__" and not getattr(cls, "__text_signature__", None):
                continue
            expected = stub_parameters(function)
            actual = runtime_parameters(signature)
            if member == "__exit__":
                # The module takes *exc_info; the stub spells out the three values.
                assert actual == ["*_exc_info"], f"{name}.__exit__: {actual}"
                continue
            assert expected == actual, f"{name}.{member}: stub {expected}, module {actual}"
            compared += 1
    # Producer, Scheduler and Checkpointer methods at least: the check is not vacuous.
    assert compared >= 10, compared
