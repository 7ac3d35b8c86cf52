"""The mutants of a module: each one small change to its syntax tree.

What is changed: arithmetic and comparison operators, ``and``/``or``, negations, conditions,
``max``/``min``, numbers and booleans, augmented assignments, and calls made as statements
(removed). What is not: log calls (their fields are what is reported, not what is done),
docstrings and type annotations.
"""

from __future__ import annotations

import ast
import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass

type Change = Callable[[ast.AST], None]

_ARITHMETIC: dict[type[ast.operator], type[ast.operator]] = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.Div: ast.Mult,
    ast.FloorDiv: ast.Div,
    ast.Mod: ast.Mult,
    ast.Pow: ast.Mult,
}
_COMPARISON: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Lt: ast.LtE,
    ast.LtE: ast.Lt,
    ast.Gt: ast.GtE,
    ast.GtE: ast.Gt,
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
}
_SYMBOL: dict[type[ast.AST], str] = {
    ast.Add: "+",
    ast.Sub: "-",
    ast.Mult: "*",
    ast.Div: "/",
    ast.FloorDiv: "//",
    ast.Mod: "%",
    ast.Pow: "**",
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.Eq: "==",
    ast.NotEq: "!=",
    ast.Is: "is",
    ast.IsNot: "is not",
    ast.In: "in",
    ast.NotIn: "not in",
    ast.And: "and",
    ast.Or: "or",
}
_LOGGERS = frozenset({"logger", "logging", "log"})
_BODIES = ("body", "orelse", "finalbody")


@dataclass(frozen=True)
class Mutant:
    """One change to one module, named so that it can be made again: ``path#number``."""

    path: str
    number: int
    line: int
    description: str
    source: str  # the whole module with the change

    @property
    def name(self) -> str:
        return f"{self.path}#{self.number}"


def original(source: str) -> str:
    """The module as the mutants are written (without comments), for the baseline run."""
    return ast.unparse(ast.parse(source))


def mutants(path: str, source: str) -> list[Mutant]:
    tree = ast.parse(source)
    found: list[Mutant] = []
    for position, node in enumerate(_mutable_nodes(tree)):
        for description, change in _changes(node):
            changed = copy.deepcopy(tree)
            change(list(_mutable_nodes(changed))[position])
            found.append(
                Mutant(
                    path=path,
                    number=len(found) + 1,
                    line=getattr(node, "lineno", 0),
                    description=description,
                    source=ast.unparse(ast.fix_missing_locations(changed)),
                )
            )
    return found


def _mutable_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node, in a fixed order, except those inside log calls, docstrings and
    annotations."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        hidden = [*_annotations(node), *_docstring(node)]
        if _is_log_call(node):
            hidden.append(node)
        for root in hidden:
            skipped.update(id(inner) for inner in ast.walk(root))
        if id(node) not in skipped:
            yield node


def _annotations(node: ast.AST) -> list[ast.AST]:
    if isinstance(node, ast.AnnAssign):
        return [node.annotation]
    if isinstance(node, ast.arg) and node.annotation is not None:
        return [node.annotation]
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns is not None:
        return [node.returns]
    if isinstance(node, ast.TypeAlias):
        return [node.value]
    return []


def _docstring(node: ast.AST) -> list[ast.AST]:
    body = getattr(node, "body", None)
    if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
        value = body[0].value
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            return [body[0]]
    return []


def _is_log_call(node: ast.AST) -> bool:
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
        return False
    owner = node.func.value
    return isinstance(owner, ast.Name) and owner.id in _LOGGERS


def _changes(node: ast.AST) -> Iterator[tuple[str, Change]]:
    yield from _operator_changes(node)
    yield from _value_changes(node)
    yield from _statement_changes(node)


def _operator_changes(node: ast.AST) -> Iterator[tuple[str, Change]]:
    if isinstance(node, ast.BinOp | ast.AugAssign) and type(node.op) in _ARITHMETIC:
        old = type(node.op)
        new = _ARITHMETIC[old]
        yield f"`{_SYMBOL[old]}` to `{_SYMBOL[new]}`", _set("op", new)
    elif isinstance(node, ast.Compare):
        for index, op in enumerate(node.ops):
            if type(op) in _COMPARISON:
                negated = _COMPARISON[type(op)]
                yield f"`{_SYMBOL[type(op)]}` to `{_SYMBOL[negated]}`", _set_op(index, negated)
    elif isinstance(node, ast.BoolOp):
        new_bool: type[ast.boolop] = ast.Or if isinstance(node.op, ast.And) else ast.And
        yield f"`{_SYMBOL[type(node.op)]}` to `{_SYMBOL[new_bool]}`", _set("op", new_bool)
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
        yield "`not` removed", _double_negation
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        yield "unary `-` removed", _set("op", ast.UAdd)


def _value_changes(node: ast.AST) -> Iterator[tuple[str, Change]]:
    if isinstance(node, ast.Constant) and isinstance(node.value, bool):
        yield f"`{node.value}` to `{not node.value}`", _set_value(not node.value)
    elif isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        new = node.value + 1
        yield f"`{node.value!r}` to `{new!r}`", _set_value(new)
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
        swap = {"max": "min", "min": "max"}.get(node.func.id)
        if swap is not None:
            yield f"`{node.func.id}` to `{swap}`", _rename_call(swap)
    elif isinstance(node, ast.If | ast.While | ast.IfExp):
        yield "condition negated", _negate_test


def _statement_changes(node: ast.AST) -> Iterator[tuple[str, Change]]:
    for field in _BODIES:
        body = getattr(node, field, None)
        if not isinstance(body, list):
            continue
        for index, statement in enumerate(body):
            removable = isinstance(statement, ast.AugAssign) or (
                isinstance(statement, ast.Expr)
                and isinstance(statement.value, ast.Call | ast.Await)
                and not _is_log_call(statement.value)
            )
            if removable:
                yield f"line {statement.lineno} removed", _remove(field, index)


def _set(field: str, kind: type[ast.AST]) -> Change:
    def change(node: ast.AST) -> None:
        setattr(node, field, kind())

    return change


def _set_op(index: int, kind: type[ast.cmpop]) -> Change:
    def change(node: ast.AST) -> None:
        assert isinstance(node, ast.Compare)
        node.ops[index] = kind()

    return change


def _set_value(value: bool | float) -> Change:
    def change(node: ast.AST) -> None:
        assert isinstance(node, ast.Constant)
        node.value = value

    return change


def _rename_call(name: str) -> Change:
    def change(node: ast.AST) -> None:
        assert isinstance(node, ast.Call)
        assert isinstance(node.func, ast.Name)
        node.func.id = name

    return change


def _double_negation(node: ast.AST) -> None:
    # `not not x` has the truth of `x`: the negation is gone, the node stays in place.
    assert isinstance(node, ast.UnaryOp)
    node.operand = ast.UnaryOp(op=ast.Not(), operand=node.operand)


def _negate_test(node: ast.AST) -> None:
    assert isinstance(node, ast.If | ast.While | ast.IfExp)
    node.test = ast.UnaryOp(op=ast.Not(), operand=node.test)


def _remove(field: str, index: int) -> Change:
    def change(node: ast.AST) -> None:
        getattr(node, field)[index] = ast.Pass()

    return change
