"""A custom node pack's Python sources, read without importing them: where a name is defined, and what
string or dict keys a simple expression stands for.

Packs build ``NODE_CLASS_MAPPINGS`` in a few common ways beyond a dict of string literals: keys that are
class attributes (``Seed.NAME`` where ``NAME = get_name("Seed")`` and ``get_name`` formats a constant
suffix), a dict-literal config handed to a generator function, and mappings of submodules merged with
``update``, ``**`` or ``|`` after a star import. Names are looked up in the module that uses them, then
anywhere in the pack (that covers ``from .x import *`` and ``from .x import Name`` without following the
import graph). Only constant strings are computed; anything else resolves to nothing.
"""

from __future__ import annotations

import ast
import logging
import re
import string
from collections.abc import Callable, Iterator
from pathlib import Path

from comfywatchman import regular_files

logger = logging.getLogger(__name__)

MAX_STRING = 1000  # no node type name is longer; longer strings are not built
_PERCENT_FIELD = re.compile(r"%[s%]")
MAX_DEPTH = 12  # names resolving through names: deeper than this is a loop or not worth following
# Statement lists that run when a module is imported (not those of functions or classes).
_BLOCKS = ("body", "orelse", "finalbody", "handlers", "cases")
_DEFINITIONS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


class PackSource:
    """The modules of one pack: bytes read on demand, each parsed at most once."""

    def __init__(self, modules: list[Path], problems: list[str], max_bytes: int) -> None:
        self.modules = modules
        self.problems = problems
        self.max_bytes = max_bytes
        self._bytes: dict[Path, bytes | None] = {}
        self._trees: dict[Path, ast.Module | None] = {}
        self._defined: dict[str, list[tuple[Path, ast.stmt]]] = {}

    def source(self, module: Path) -> bytes | None:
        """Return the bytes of ``module`` (None when too large or unreadable, with a problem recorded)."""
        if module not in self._bytes:
            data: bytes | None = None
            try:
                if module.stat().st_size <= self.max_bytes:
                    # A regular file only: a pipe would wait forever, /dev/zero never end (and are no module).
                    data = regular_files.read_regular(module)
            except OSError as exc:
                self.problems.append(f"{module}: unreadable: {exc}")
            self._bytes[module] = data
        return self._bytes[module]

    def tree(self, module: Path) -> ast.Module | None:
        """Return the parsed ``module`` (None when it cannot be read or parsed, with a problem recorded)."""
        if module not in self._trees:
            tree: ast.Module | None = None
            data = self.source(module)
            if data is not None:
                try:
                    tree = ast.parse(data, filename=str(module))
                except SyntaxError as exc:
                    self.problems.append(f"{module}: cannot parse line {exc.lineno}: {exc.msg}")
                except ValueError as exc:
                    self.problems.append(f"{module}: unreadable: {exc}")
            self._trees[module] = tree
        return self._trees[module]

    def definitions(self, name: str, module: Path) -> Iterator[tuple[Path, ast.stmt]]:
        """Yield (module, statement) for each import-time definition of ``name``: in ``module`` first, then in
        the pack's other modules that mention it (a function, a class, or an assignment to the name)."""
        found = self._defined.get(name)
        if found is None:
            needle = name.encode()
            # Parsing is the cost: only modules with a line that looks like a definition of the name are parsed.
            looks_defined = _definition_line(needle)
            found = []
            for path in self.modules:
                data = self.source(path)
                if data is None or needle not in data or not looks_defined.search(data):
                    continue
                tree = self.tree(path)
                if tree is not None:
                    found.extend((path, stmt) for stmt in module_statements(tree) if _defines(stmt, name))
            self._defined[name] = found
        yield from (d for d in found if d[0] == module)
        yield from (d for d in found if d[0] != module)

    def import_alias(self, name: str, module: Path) -> str | None:
        """Return the original name that ``module`` imports as ``name`` (``from .x import A as name``)."""
        tree = self.tree(module)
        for stmt in module_statements(tree) if tree is not None else ():
            if isinstance(stmt, ast.ImportFrom):
                for alias in stmt.names:
                    if alias.asname == name and alias.name != name:
                        return alias.name
        return None


def _definition_line(name: bytes) -> re.Pattern[bytes]:
    """Return a pattern for a source line that may define ``name``: ``def``/``class name``, ``name = ``,
    ``name: T = `` or ``a, name = ``."""
    word = re.escape(name)
    return re.compile(
        rb"^[ \t]*(?:(?:async[ \t]+)?def|class)[ \t]+" + word + rb"\b"
        rb"|^[ \t]*(?:[\w.]+[ \t]*,[ \t]*)*" + word + rb"[ \t]*(?:,[ \t]*[\w.]+[ \t]*)*(?::[^=\n]*)?=(?!=)",
        re.MULTILINE,
    )


def module_statements(tree: ast.AST) -> Iterator[ast.stmt]:
    """Yield the statements that run at import time: the module's, and those inside if/try/with/for blocks,
    but not the bodies of functions and classes."""
    pending: list[ast.AST] = [tree]
    while pending:
        node = pending.pop()
        for block in _BLOCKS:
            children = getattr(node, block, None)
            if isinstance(children, list):
                for child in children:
                    if isinstance(child, ast.stmt):
                        yield child
                        if not isinstance(child, _DEFINITIONS):
                            pending.append(child)
                    elif isinstance(child, (ast.ExceptHandler, ast.match_case)):
                        pending.append(child)


def _defines(stmt: ast.stmt, name: str) -> bool:
    if isinstance(stmt, _DEFINITIONS):
        return stmt.name == name
    if isinstance(stmt, ast.Assign):
        return any(name in _target_names(t) for t in stmt.targets)
    if isinstance(stmt, ast.AnnAssign):
        return stmt.value is not None and name in _target_names(stmt.target)
    return False


def _target_names(target: ast.AST) -> list[str]:
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, (ast.Tuple, ast.List)):
        return [n for element in target.elts for n in _target_names(element)]
    return []


def _plain_format(template: str) -> bool:
    """Whether ``template`` uses only ``{}``, ``{0}`` or ``{name}`` fields: no attribute or index lookups, no
    conversion and no format spec (a width could build a string of any size)."""
    try:
        fields = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(template) if f is not None]
    except ValueError:
        return False
    return all((f == "" or f.isdigit() or f.isidentifier()) and not spec and not conv for f, spec, conv in fields)


class Resolver:
    """Computes the constant strings and dict keys that expressions of a pack stand for."""

    def __init__(self, pack: PackSource, is_mapping: Callable[[ast.AST], bool]) -> None:
        self.pack = pack
        self.is_mapping = is_mapping
        self._name_keys: dict[tuple[str, Path], set[str]] = {}
        self._name_strings: dict[tuple[str, Path], str | None] = {}

    # ---- strings -------------------------------------------------------------------------------------

    def string(self, node: ast.AST, module: Path, scope: dict[str, str] | None = None, depth: int = 0) -> str | None:
        """Return the constant string ``node`` evaluates to in ``module`` (``scope``: local names), or None
        (also for a string longer than any node type name: nothing is built without bound)."""
        if depth > MAX_DEPTH:
            return None
        text = self._string(node, module, scope, depth)
        return text if text is None or len(text) <= MAX_STRING else None

    def _string(self, node: ast.AST, module: Path, scope: dict[str, str] | None, depth: int) -> str | None:
        if isinstance(node, ast.Constant):
            return node.value if isinstance(node.value, str) else None
        if isinstance(node, ast.Name):
            if scope is not None and node.id in scope:
                return scope[node.id]
            return self._name_string(node.id, module, depth)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            return self._class_attribute(node.value.id, node.attr, module, depth)
        if isinstance(node, ast.JoinedStr):
            parts = [self._fstring_part(v, module, scope, depth) for v in node.values]
            return None if any(p is None for p in parts) else "".join(p for p in parts if p is not None)
        if isinstance(node, ast.BinOp):
            return self._binop(node, module, scope, depth)
        if isinstance(node, ast.Call):
            return self._call(node, module, scope, depth)
        return None

    def _fstring_part(self, value: ast.AST, module: Path, scope: dict[str, str] | None, depth: int) -> str | None:
        if isinstance(value, ast.FormattedValue):
            if value.conversion not in (-1, 115) or value.format_spec is not None:  # plain or !s only
                return None
            return self.string(value.value, module, scope, depth + 1)
        return self.string(value, module, scope, depth + 1)

    def _binop(self, node: ast.BinOp, module: Path, scope: dict[str, str] | None, depth: int) -> str | None:
        left = self.string(node.left, module, scope, depth + 1)
        if left is None:
            return None
        if isinstance(node.op, ast.Add):
            right = self.string(node.right, module, scope, depth + 1)
            return None if right is None else left + right
        if isinstance(node.op, ast.Mod):
            items = node.right.elts if isinstance(node.right, ast.Tuple) else [node.right]
            values = [self.string(item, module, scope, depth + 1) for item in items]
            if any(v is None for v in values) or _PERCENT_FIELD.sub("", left).count("%"):
                return None  # only bare %s fields: a width or precision could build a string of any size
            try:
                return left % tuple(values)
            except (TypeError, ValueError, KeyError):
                return None
        return None

    def _call(self, node: ast.Call, module: Path, scope: dict[str, str] | None, depth: int) -> str | None:
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr == "format":
            template = self.string(func.value, module, scope, depth + 1)
            if template is None or not _plain_format(template):
                return None
            args = [self.string(a, module, scope, depth + 1) for a in node.args]
            kwargs = {k.arg: self.string(k.value, module, scope, depth + 1) for k in node.keywords if k.arg}
            if (
                any(a is None for a in args)
                or any(v is None for v in kwargs.values())
                or len(kwargs) < len(node.keywords)
            ):
                return None
            try:
                return template.format(*args, **kwargs)
            except (IndexError, KeyError, ValueError):
                return None
        if isinstance(func, ast.Name):
            return self._function_result(func.id, node, module, scope, depth)
        return None

    def _function_result(
        self, name: str, call: ast.Call, module: Path, scope: dict[str, str] | None, depth: int
    ) -> str | None:
        """Return what a helper like ``def get_name(n): return f"{n} (pack)"`` gives for ``call``."""
        for where, stmt in self.pack.definitions(name, module):
            if not isinstance(stmt, ast.FunctionDef):
                continue
            body = [s for s in stmt.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
            if len(body) != 1 or not isinstance(body[0], ast.Return) or body[0].value is None:
                return None
            local = self._bind(stmt.args, call, module, scope, depth)
            if local is None:
                return None
            return self.string(body[0].value, where, local, depth + 1)
        return None

    def _bind(
        self, params: ast.arguments, call: ast.Call, module: Path, scope: dict[str, str] | None, depth: int
    ) -> dict[str, str] | None:
        names = [a.arg for a in [*params.posonlyargs, *params.args]]
        if len(call.args) > len(names) or any(isinstance(a, ast.Starred) for a in call.args):
            return None
        local: dict[str, str] = {}
        defaults = dict(zip(names[len(names) - len(params.defaults) :], params.defaults, strict=True))
        given = dict(zip(names, call.args, strict=False))
        given.update({k.arg: k.value for k in call.keywords if k.arg in names})
        for param in names:
            value = given.get(param)
            if value is not None:
                text = self.string(value, module, scope, depth + 1)
            elif param in defaults:
                text = self.string(defaults[param], module, None, depth + 1)
            else:
                return None
            if text is not None:
                local[param] = text  # a parameter that is no string only matters if the result uses it
        return local

    def _name_string(self, name: str, module: Path, depth: int) -> str | None:
        memo = (name, module)
        if memo not in self._name_strings:
            self._name_strings[memo] = None  # a name defined through itself has no value
            self._name_strings[memo] = self._find_name_string(name, module, depth)
        return self._name_strings[memo]

    def _find_name_string(self, name: str, module: Path, depth: int) -> str | None:
        for where, stmt in self.pack.definitions(name, module):
            value = _assigned_value(stmt, name)
            if value is not None:
                text = self.string(value, where, None, depth + 1)
                if text is not None:
                    return text
        return None

    def _class_attribute(self, class_name: str, attr: str, module: Path, depth: int) -> str | None:
        for where, stmt in self.pack.definitions(class_name, module):
            if not isinstance(stmt, ast.ClassDef):
                continue
            body = {n: v for s in stmt.body for n, v in _class_assignments(s)}
            if attr in body:
                # Names in a class body see the class's other attributes, then the module's.
                used = {n.id for n in ast.walk(body[attr]) if isinstance(n, ast.Name)} & body.keys() - {attr}
                scope = {n: text for n in used if (text := self.string(body[n], where, None, depth + 1)) is not None}
                return self.string(body[attr], where, scope, depth + 1)
            for base in stmt.bases:
                if isinstance(base, ast.Name) and base.id != class_name:
                    found = self._class_attribute(base.id, attr, where, depth + 1)
                    if found is not None:
                        return found
            return None
        return None

    # ---- dict keys -----------------------------------------------------------------------------------

    def dict_keys(self, node: ast.AST, module: Path, depth: int = 0) -> set[str]:
        """Return the string keys of the dict ``node`` builds: a literal (with ``**`` parts), ``dict(...)``,
        ``a | b``, a name or attribute filled elsewhere in the pack, or a call building a mapping from
        dicts handed to it (``generate_mappings(NODE_CONFIG)``)."""
        if depth > MAX_DEPTH:
            return set()
        if isinstance(node, ast.Dict):
            return self._literal_keys(node, module, depth)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            return self.dict_keys(node.left, module, depth + 1) | self.dict_keys(node.right, module, depth + 1)
        if isinstance(node, ast.Name):
            return self.name_keys(node.id, module, depth + 1)
        if isinstance(node, ast.Attribute):
            # module.NODE_CLASS_MAPPINGS of a submodule: its own mapping is read on its own already.
            return set() if self.is_mapping(node) else self.name_keys(node.attr, module, depth + 1)
        if isinstance(node, ast.Call):
            return self._built_keys(node, module, depth)
        return set()  # comprehensions and the like are built from data this reading cannot see

    def _literal_keys(self, node: ast.Dict, module: Path, depth: int) -> set[str]:
        """Return the string keys of a dict literal, those of its ``**`` parts included."""
        keys: set[str] = set()
        for key, value in zip(node.keys, node.values, strict=True):
            if key is None:
                keys |= self.dict_keys(value, module, depth + 1)  # {**OTHER_MAPPINGS}
            else:
                text = self.string(key, module, None, depth + 1)
                if text is not None:
                    keys.add(text)
        return keys

    def _built_keys(self, node: ast.Call, module: Path, depth: int) -> set[str]:
        """Return the keys of the mapping a call builds: ``dict(A=..., **B)``'s keyword names and B's keys; for
        any other call (``build(CONFIG, strict=True)``) only the keys of the dicts handed over."""
        is_dict = isinstance(node.func, ast.Name) and node.func.id in ("dict", "OrderedDict")
        keys = {kw.arg for kw in node.keywords if kw.arg and is_dict}
        for arg in node.args:
            keys |= self.dict_keys(arg, module, depth + 1)
        for kw in node.keywords:
            if kw.arg is None or not is_dict:
                keys |= self.dict_keys(kw.value, module, depth + 1)
        return keys

    def name_keys(self, name: str, module: Path, depth: int) -> set[str]:
        """Return the keys every module that defines ``name`` puts into it (the first module that has any)."""
        memo = (name, module)
        if depth > MAX_DEPTH or memo in self._name_keys:
            return set(self._name_keys.get(memo, ()))
        self._name_keys[memo] = set()  # a dict merged into itself, directly or not, adds nothing
        keys = self._name_keys[memo] = self._find_name_keys(name, module, depth)
        return set(keys)

    def _find_name_keys(self, name: str, module: Path, depth: int) -> set[str]:
        seen: set[Path] = set()
        for where, _ in self.pack.definitions(name, module):
            if where in seen:
                continue
            seen.add(where)
            tree = self.pack.tree(where)
            if tree is not None:
                keys = self.filled_keys(tree, where, lambda n: _names(n, name), depth + 1)
                if keys:
                    return keys
        original = self.pack.import_alias(name, module)
        if original is not None:
            return (
                set()
                if original.upper().endswith("NODE_CLASS_MAPPINGS")
                else self.name_keys(original, module, depth + 1)
            )
        return set()

    def filled_keys(self, tree: ast.AST, module: Path, target: Callable[[ast.AST], bool], depth: int = 0) -> set[str]:
        """Return the keys that statements of ``tree`` put into the mapping(s) ``target`` recognises:
        ``M = {...}``, ``M, other = build(...)``, ``M[key] = ...``, ``M.update(...)``, ``M |= ...``."""
        keys: set[str] = set()
        for node in all_statements(tree):
            if isinstance(node, ast.Expr):
                keys |= self._call_keys(node.value, module, target, depth)
            elif isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for each in targets:
                    keys |= self._assign_keys(each, node.value, module, target, depth)
            elif isinstance(node, ast.AugAssign) and target(node.target):
                keys |= self.dict_keys(node.value, module, depth + 1)
        return keys

    def _assign_keys(
        self, each: ast.AST, value: ast.AST | None, module: Path, target: Callable[[ast.AST], bool], depth: int
    ) -> set[str]:
        if value is None:
            return set()
        if target(each):
            return self.dict_keys(value, module, depth + 1)
        if isinstance(each, ast.Subscript) and target(each.value):
            key = self.string(each.slice, module, None, depth + 1)
            return {key} if key is not None else set()
        if isinstance(each, (ast.Tuple, ast.List)) and any(target(e) for e in each.elts):
            if isinstance(value, (ast.Tuple, ast.List)) and len(value.elts) == len(each.elts):
                return {
                    k
                    for e, v in zip(each.elts, value.elts, strict=True)
                    if target(e)
                    for k in self.dict_keys(v, module, depth + 1)
                }
            if isinstance(value, ast.Call):
                return self.dict_keys(value, module, depth + 1)  # M, DISPLAY = generate(CONFIG)
        return set()

    def _call_keys(self, value: ast.AST, module: Path, target: Callable[[ast.AST], bool], depth: int) -> set[str]:
        if not (isinstance(value, ast.Call) and isinstance(value.func, ast.Attribute) and target(value.func.value)):
            return set()
        if value.func.attr == "update":
            keys = {kw.arg for kw in value.keywords if kw.arg}
            for arg in value.args:
                keys |= self.dict_keys(arg, module, depth + 1)
            return keys
        if value.func.attr in ("setdefault", "__setitem__") and value.args:
            key = self.string(value.args[0], module, None, depth + 1)
            return {key} if key is not None else set()
        return set()


def all_statements(tree: ast.AST) -> list[ast.AST]:
    """Return every statement of ``tree`` at any depth (module, class, function, if/try/with/for bodies).

    Mappings are filled by statements; walking statements only, not every expression node, is several
    times faster than ``ast.walk`` on large modules.
    """
    found: list[ast.AST] = []
    pending: list[ast.AST] = [tree]
    while pending:
        node = pending.pop()
        for name in _BLOCKS:
            children = getattr(node, name, None)
            if isinstance(children, list):
                for child in children:
                    if isinstance(child, ast.AST):
                        found.append(child)
                        pending.append(child)
    return found


def _names(node: ast.AST, name: str) -> bool:
    return isinstance(node, ast.Name) and node.id == name


def _assigned_value(stmt: ast.stmt, name: str) -> ast.AST | None:
    """Return the expression ``stmt`` assigns to ``name`` (None when it is no plain assignment of it)."""
    if isinstance(stmt, ast.Assign):
        for target in stmt.targets:
            if _names(target, name):
                return stmt.value
            if isinstance(target, (ast.Tuple, ast.List)) and isinstance(stmt.value, (ast.Tuple, ast.List)):
                for element, value in zip(target.elts, stmt.value.elts, strict=False):
                    if _names(element, name):
                        return value
    if isinstance(stmt, ast.AnnAssign) and _names(stmt.target, name):
        return stmt.value
    return None


def _class_assignments(stmt: ast.stmt) -> list[tuple[str, ast.AST]]:
    if isinstance(stmt, ast.Assign):
        return [(t.id, stmt.value) for t in stmt.targets if isinstance(t, ast.Name)]
    if isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name) and stmt.value is not None:
        return [(stmt.target.id, stmt.value)]
    return []
