"""What a workflow needs: the model files its nodes name and the node types it uses.

UI workflows are walked as ComfyUI runs them: from the top-level graph into every subgraph instance (and
legacy group node), carrying the instance's mode and the widget values it promotes, so an inner loader whose
value the instance overrides yields the instance's value, not its own stale one. A loader input converted to
a socket takes its value from the PrimitiveNode feeding it. API prompts are flat and read directly.

The result is plain data (``Requirements.to_json``) so the scan stage can keep it per content hash and skip
parsing an unchanged workflow next cycle.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NamedTuple, TypeGuard

from comfywatchman.comfy.folders import CONFIG_EXTENSIONS, MODEL_EXTENSIONS
from comfywatchman.workflow import embeddings, names
from comfywatchman.workflow.graph import Graph, as_list, group_node_name, subgraph_definitions
from comfywatchman.workflow.load import Workflow

logger = logging.getLogger(__name__)
IDENTIFIER = embeddings.IDENTIFIER

INACTIVE_MODES = {2: "muted", 4: "bypassed"}
# Whenever extraction changes, bump EXTRACTOR_VERSION (workflow/extractor_version.py), so requirements kept
# from an earlier cycle are recomputed.
# Node types whose widgets hold free text or values meant for other nodes, never files of their own.
NO_OWN_FILES = frozenset({"Note", "MarkdownNote", "PrimitiveNode", "Reroute"})
# Longest widget string the fallback treats as a possible file name; longer ones are prompts and notes.
MAX_FALLBACK_CHARS = 512
# A real workflow uses a few hundred node types and names fewer models; past these it is not one a person
# saved, and listing it all would cost memory without bound (a million distinct types took 7.4 GB).
MAX_NODE_TYPES = 10_000
MAX_MODELS = 10_000
# A model's origins are compared one by one up to this many; past it they are told apart by key (a set).
COMPARED_ORIGINS = 8
# Subgraph instances are walked once per path (each instance may promote its own values) while the nodes
# visited stay within this many plus SPREAD_FACTOR times the nodes the file holds; past it, each definition
# is walked once more at most, so fan-out (two instances per level, 30 levels) stays linear in the file.
VISIT_ALLOWANCE = 20_000
SPREAD_FACTOR = 2


class TooLarge(ValueError):
    """A workflow that names more node types or models than any real one; the message says which limit."""


# Folder types whose entries are named without an extension (diffusers models are folders): a loader input
# of one of these takes any name; every other loader input needs a value with a file's shape.
EXTENSIONLESS_FOLDERS = frozenset({"diffusers"})
# Extensions a loader input's value may end in besides the model extensions, by folder type.
FOLDER_EXTENSIONS: dict[str, frozenset[str]] = {"configs": CONFIG_EXTENSIONS}


# Plain classes, not dataclasses: every cycle's process makes these classes, and a dataclass costs it 0.2 to
# 0.4 ms to make (Python 3.11). Those the tests compare keep a field-by-field __eq__, as the dataclass had.
class LoaderInput:
    """One model input of a loader node: its folder type, its position among the widgets, and whether it
    takes names without an extension (``extensionless``: diffusers folders, a pack's repo names)."""

    __slots__ = ("endings", "extensionless", "folder", "index", "input")

    input: str
    folder: str
    index: int
    extensionless: bool
    # The endings ``names_file`` accepts (worked out once: the scan asks for every loader input it meets).
    endings: tuple[str, ...]

    def __init__(self, input: str, folder: str, index: int, extensionless: bool = False) -> None:
        self.input, self.folder, self.index, self.extensionless = input, folder, index, extensionless
        self.endings = _endings(folder)

    def names_file(self, value: Any) -> TypeGuard[str]:
        """Return whether ``value`` can name a file of this input: any string for an extensionless input,
        else one ending in a model extension (or a config extension for ``configs``). Other words in a
        loader's widget (``enable``, ``lanczos``: a widget misplaced by a pack update, an index off by one)
        are no model, and asking the services about them costs requests and misleads the report."""
        if not isinstance(value, str):
            return False
        if self.extensionless:
            return True
        return value.strip().lower().endswith(self.endings)


_ENDINGS: dict[str, tuple[str, ...]] = {}


def _endings(folder: str) -> tuple[str, ...]:
    """Return the extensions a loader input of ``folder`` accepts, as the tuple ``str.endswith`` takes."""
    found = _ENDINGS.get(folder)
    if found is None:
        found = _ENDINGS[folder] = tuple(sorted(MODEL_EXTENSIONS | FOLDER_EXTENSIONS.get(folder, frozenset())))
    return found


def loader_table(config_loaders: Mapping[str, Mapping[str, Any]]) -> dict[str, list[LoaderInput]]:
    """Return the loader table from config: node type -> its model inputs with folder and widget index."""
    table: dict[str, list[LoaderInput]] = {}
    for node_type, inputs in config_loaders.items():
        entries = []
        for position, (input_name, spec) in enumerate(inputs.items()):
            if isinstance(spec, str):
                entries.append(LoaderInput(input_name, spec, position, spec in EXTENSIONLESS_FOLDERS))
            else:
                folder = spec["folder"]
                extensionless = bool(spec.get("extensionless", folder in EXTENSIONLESS_FOLDERS))
                entries.append(LoaderInput(input_name, folder, spec.get("index", position), extensionless))
        table[node_type] = entries
    return table


class Origin(NamedTuple):
    """Where in the workflow a requirement comes from."""

    node_id: str
    node_type: str
    input: str | None
    subgraph_path: list[str]
    mode: str  # active | muted | bypassed
    via: str  # widget | declared | fallback | prompt | primitive | promoted

    def to_json(self) -> dict[str, Any]:
        """Return the origin as stored in scan.json."""
        return {
            "node_id": self[0],
            "node_type": self[1],
            "input": self[2],
            "subgraph_path": self[3],
            "mode": self[4],
            "via": self[5],
        }


class ModelRef:
    """One model file a workflow needs, with every place that names it and any author declaration."""

    __slots__ = ("declarations", "folder", "name", "origins")

    name: str
    folder: str | None
    origins: list[Origin]
    declarations: list[dict[str, Any]]

    def __init__(
        self,
        name: str,
        folder: str | None,
        origins: list[Origin] | None = None,
        declarations: list[dict[str, Any]] | None = None,
    ) -> None:
        self.name, self.folder = name, folder
        self.origins = [] if origins is None else origins
        self.declarations = [] if declarations is None else declarations

    def __eq__(self, other: object) -> bool:
        if type(other) is not ModelRef:
            return NotImplemented
        return (self.name, self.folder, self.origins, self.declarations) == (
            other.name, other.folder, other.origins, other.declarations,
        )  # fmt: skip

    @property
    def active(self) -> bool:
        """True when at least one node that needs the file runs (is neither muted nor bypassed)."""
        return any(o.mode == "active" for o in self.origins) or not self.origins

    @property
    def from_prompt_only(self) -> bool:
        """True when only prompt text names it (``embedding:NAME``), so ComfyUI's suffix lookup applies."""
        return bool(self.origins) and all(o.via == "prompt" for o in self.origins)

    def to_json(self) -> dict[str, Any]:
        """Return the reference as stored in scan.json."""
        return {
            "name": self.name,
            "folder": self.folder,
            "origins": [
                {"node_id": o[0], "node_type": o[1], "input": o[2], "subgraph_path": o[3], "mode": o[4], "via": o[5]}
                for o in self.origins
            ],
            "declarations": self.declarations,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ModelRef:
        """Return the reference ``data`` (as ``to_json`` gives it) stands for."""
        origins = [Origin(**origin) for origin in data["origins"]]
        return cls(data["name"], data["folder"], origins, data["declarations"])


class NodeRef:
    """One node type a workflow uses, with the ids of the nodes of that type."""

    __slots__ = ("class_type", "made_with", "modes", "node_ids")

    class_type: str
    node_ids: list[str]
    modes: list[str]
    made_with: dict[str, str] | None  # the pack the node was made with (properties cnr_id/aux_id/ver)

    def __init__(
        self,
        class_type: str,
        node_ids: list[str] | None = None,
        modes: list[str] | None = None,
        made_with: dict[str, str] | None = None,
    ) -> None:
        self.class_type = class_type
        self.node_ids = [] if node_ids is None else node_ids
        self.modes = [] if modes is None else modes
        self.made_with = made_with

    def __eq__(self, other: object) -> bool:
        if type(other) is not NodeRef:
            return NotImplemented
        return (self.class_type, self.node_ids, self.modes, self.made_with) == (
            other.class_type, other.node_ids, other.modes, other.made_with,
        )  # fmt: skip

    @property
    def active(self) -> bool:
        """True when at least one node of this type runs."""
        return "active" in self.modes or not self.modes

    def to_json(self) -> dict[str, Any]:
        """Return the node type use as stored in scan.json."""
        data: dict[str, Any] = {"class_type": self.class_type, "node_ids": self.node_ids, "modes": self.modes}
        if self.made_with:
            data["made_with"] = self.made_with
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> NodeRef:
        """Return the node type use ``data`` (as ``to_json`` gives it) stands for."""
        return cls(data["class_type"], data["node_ids"], data["modes"], data.get("made_with"))


MADE_WITH_KEYS = ("cnr_id", "aux_id", "ver")


def made_with(node: Mapping[str, Any]) -> dict[str, str] | None:
    """Return the ``cnr_id`` / ``aux_id`` / ``ver`` a node's ``properties`` carry (the pack it was made with,
    in the Comfy Registry's ids), or None when it carries none."""
    properties = node.get("properties")
    return _made_with(properties) if isinstance(properties, dict) else None


def _made_with(properties: Mapping[str, Any]) -> dict[str, str] | None:
    """Return ``made_with`` of a node's ``properties`` (a dict)."""
    # Each of MADE_WITH_KEYS in turn, written out: this runs for the first node of each type of every workflow.
    # An absent key reads as None and is passed over before any call (most nodes carry no aux_id).
    cnr_id = properties.get("cnr_id")
    aux_id = properties.get("aux_id")
    if cnr_id is None and aux_id is None and "cnr_id" not in properties and "aux_id" not in properties:
        return None
    found = {}
    if cnr_id is not None and isinstance(cnr_id, str) and cnr_id and len(cnr_id) <= 200:
        found["cnr_id"] = cnr_id.strip()
    if aux_id is not None and isinstance(aux_id, str) and aux_id and len(aux_id) <= 200:
        found["aux_id"] = aux_id.strip()
    ver = properties.get("ver")
    if ver is not None and isinstance(ver, str) and ver and len(ver) <= 200:
        found["ver"] = ver.strip()
    return found or None


class Requirements:
    """Everything a workflow needs."""

    __slots__ = ("models", "nodes")

    models: list[ModelRef]
    nodes: list[NodeRef]

    def __init__(self, models: list[ModelRef] | None = None, nodes: list[NodeRef] | None = None) -> None:
        self.models = [] if models is None else models
        self.nodes = [] if nodes is None else nodes

    def __eq__(self, other: object) -> bool:
        if type(other) is not Requirements:
            return NotImplemented
        return (self.models, self.nodes) == (other.models, other.nodes)

    def to_json(self) -> dict[str, Any]:
        """Return the requirements as stored in scan.json."""
        return {"models": [m.to_json() for m in self.models], "nodes": [n.to_json() for n in self.nodes]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Requirements:
        """Return the requirements ``data`` (as ``to_json`` gives it) stands for."""
        return cls([ModelRef.from_json(m) for m in data["models"]], [NodeRef.from_json(n) for n in data["nodes"]])


class _Collector:
    """What a walk finds, kept as scan.json stores it (``Requirements.to_json``'s dicts), so that the scan's
    workers hand it on without making a ModelRef, an Origin and a NodeRef per entry first and then a dict of
    each: on the bench's 2,000 workflows that was about an eighth of the extraction's work."""

    __slots__ = ("_path_keys", "_paths", "by_base", "models", "nodes", "origin_keys", "placeholders", "seen")

    placeholders: frozenset[str]
    # (folder, lookup key of the name) -> the model's dict: name, folder, origins, declarations.
    models: dict[tuple[str | None, str], dict[str, Any]]
    # class type -> the node type's dict: class_type, node_ids, modes, and made_with once a node tells it.
    nodes: dict[str, dict[str, Any]]
    # (folder, case-folded base name) -> the first model so named: declarations find their widget's model here.
    by_base: dict[tuple[str | None, str], dict[str, Any]]
    # The declarations each model already holds, and the origins of each model that has many (by id of the
    # model's dict), so adding is a set lookup, not a scan of the list (linear, not quadratic).
    seen: set[tuple[Any, ...]]
    origin_keys: dict[int, set[tuple[Any, ...]]]
    # id of an origin's subgraph_path list -> the list as a tuple (for ``origin_keys``), and the lists themselves
    _path_keys: dict[int, tuple[str, ...]]
    _paths: list[list[str]]

    def __init__(self, placeholders: frozenset[str]) -> None:
        self.placeholders = placeholders
        self.models, self.nodes, self.by_base, self.seen, self.origin_keys = {}, {}, {}, set(), {}
        self._path_keys, self._paths = {}, []

    def add_model(
        self,
        name: str,
        folder: str | None,
        node_id: str,
        node_type: str,
        input_name: str | None,
        path: list[str],
        mode: str,
        via: str,
        declaration: dict[str, Any] | None = None,
    ) -> None:
        """Add model ``name`` of ``folder``, named by the node ``node_id`` (the Origin's fields, in its order)
        and declared by ``declaration`` when one is given."""
        stripped = name.strip()
        folded = stripped.casefold()
        if folded in self.placeholders:
            return
        # names.normalize, inlined: it runs for every model a workflow names (the common name, ASCII without a
        # backslash, is its own normal form and case-folded already).
        if "\\" in stripped or not stripped.isascii():
            folded = names.normalize(stripped.replace("\\", "/")).casefold()
        origin = {
            "node_id": node_id,
            "node_type": node_type,
            "input": input_name,
            "subgraph_path": path,
            "mode": mode,
            "via": via,
        }
        key = (folder, folded)
        ref = self.models.get(key)
        if ref is None:
            base = (folder, folded.rsplit("/", 1)[-1])  # casefolding never makes or removes a "/"
            # A declaration usually gives the bare file name while the widget may carry a subfolder.
            ref = self.by_base.get(base) if declaration is not None else None
        if ref is None:
            if len(self.models) >= MAX_MODELS:
                raise TooLarge(f"names more than {MAX_MODELS} model files")
            ref = self.models[key] = {"name": name, "folder": folder, "origins": [origin], "declarations": []}
            if base not in self.by_base:
                self.by_base[base] = ref
        elif len(ref["origins"]) < COMPARED_ORIGINS:
            # Nearly every model has one origin or two: comparing the dicts costs less than keeping keys.
            if origin not in ref["origins"]:
                ref["origins"].append(origin)
        else:
            self._add_origin(ref, origin)
        if declaration is not None:
            declaration_key = (id(ref), "declaration", *declaration.items())
            if declaration_key not in self.seen:
                self.seen.add(declaration_key)
                ref["declarations"].append(declaration)

    def _add_origin(self, ref: dict[str, Any], origin: dict[str, Any]) -> None:
        """Add ``origin`` to a model that has COMPARED_ORIGINS or more unless it is there, by key."""
        keys = self.origin_keys.get(id(ref))
        if keys is None:
            keys = self.origin_keys[id(ref)] = {self._origin_key(known) for known in ref["origins"]}
        key = self._origin_key(origin)
        if key not in keys:
            keys.add(key)
            ref["origins"].append(origin)

    def _origin_key(self, origin: dict[str, Any]) -> tuple[Any, ...]:
        """Return what tells ``origin`` from the others of its model, as a hashable value (equal exactly when
        the two dicts are)."""
        path = origin["subgraph_path"]
        path_key = self._path_keys.get(id(path))
        if path_key is None:
            # Paths are lists shared by every origin of one graph level; the list is kept with its tuple so its
            # id cannot be reused by another list while this collector lives.
            path_key = self._path_keys[id(path)] = tuple(path)
            self._paths.append(path)
        return (origin["node_id"], origin["node_type"], origin["input"], origin["mode"], origin["via"], path_key)

    def add_node(self, class_type: str, node_id: str, mode: str) -> dict[str, Any]:
        """Add node ``node_id`` of ``class_type``, running in ``mode``; return the dict of its node type (made on
        first use). Raise TooLarge past MAX_NODE_TYPES."""
        ref = self.nodes.get(class_type)
        if ref is None:
            if len(self.nodes) >= MAX_NODE_TYPES:
                raise TooLarge(f"uses more than {MAX_NODE_TYPES} node types")
            ref = self.nodes[class_type] = {"class_type": class_type, "node_ids": [node_id], "modes": [mode]}
        else:
            ref["node_ids"].append(node_id)
            ref["modes"].append(mode)
        return ref

    def to_json(self) -> dict[str, Any]:
        """Return what was found as ``Requirements.to_json`` gives it."""
        # Keyed by (folder, lookup key of the name): sort by that, without working the key out again.
        models = [ref for _, ref in sorted(self.models.items(), key=lambda item: (item[0][0] or "~", item[0][1]))]
        nodes = self.nodes
        return {"models": models, "nodes": [nodes[class_type] for class_type in sorted(nodes)]}


def extract(workflow: Workflow, loaders: Mapping[str, list[LoaderInput]], placeholders: frozenset[str]) -> Requirements:
    """Return the model files and node types ``workflow`` needs.

    Loader inputs come from ``loaders``; values in ``placeholders`` (compared case-folded) name no file. Nodes
    not in the table still yield any string widget ending in a model extension, with an unknown folder, and
    every string widget yields the embeddings its prompt text names.
    """
    return Requirements.from_json(extract_json(workflow, loaders, placeholders))


def extract_json(
    workflow: Workflow, loaders: Mapping[str, list[LoaderInput]], placeholders: frozenset[str]
) -> dict[str, Any]:
    """Return what ``extract`` finds in ``workflow`` as ``Requirements.to_json`` gives it (made directly: the
    scan's workers need only that)."""
    collector = _Collector(placeholders)
    if workflow.format == "api":
        _extract_api(workflow.data, loaders, collector)
    else:
        _UIWalker(workflow.data, loaders, collector).run()
    return collector.to_json()


def _declarations(entries: Any) -> Iterator[dict[str, Any]]:
    if not isinstance(entries, list):
        return
    for entry in entries:
        if isinstance(entry, dict) and isinstance(entry.get("name"), str) and entry["name"].strip():
            yield {
                "name": entry["name"],
                "url": entry.get("url") if isinstance(entry.get("url"), str) else None,
                "directory": entry.get("directory") if isinstance(entry.get("directory"), str) else None,
                "hash": entry.get("hash") if isinstance(entry.get("hash"), str) else None,
                "hash_type": entry.get("hash_type") if isinstance(entry.get("hash_type"), str) else None,
            }


# inner node id -> widget name -> (value, via): what an enclosing instance sets on the nodes of a graph.
Overrides = dict[str, dict[str, tuple[Any, str]]]


class _Frame:
    """One graph level being walked: its nodes still to visit and what applies to them."""

    __slots__ = ("forced", "graph", "nodes", "overrides", "path", "prefix", "sub_id")

    nodes: Iterator[dict[str, Any]]
    graph: Graph
    path: list[str]
    prefix: str
    forced: str | None  # muted or bypassed when the instance holding this level is
    overrides: Overrides
    sub_id: str | None  # the subgraph definition walked, None at the top level

    def __init__(
        self,
        nodes: Iterator[dict[str, Any]],
        graph: Graph,
        path: list[str],
        prefix: str,
        forced: str | None,
        overrides: Overrides,
        sub_id: str | None,
    ) -> None:
        self.nodes, self.graph, self.path, self.prefix = nodes, graph, path, prefix
        self.forced, self.overrides, self.sub_id = forced, overrides, sub_id


class _UIWalker:
    """Walks a UI workflow from its top-level graph through subgraph and group node instances.

    The walk keeps its own stack (a chain of 2,000 nested subgraphs is no deeper for Python than one), and
    its work is bounded by the file's size: see VISIT_ALLOWANCE.
    """

    def __init__(self, data: Mapping[str, Any], loaders: Mapping[str, list[LoaderInput]], out: _Collector) -> None:
        self.data = data
        self.loaders = loaders
        self.out = out
        self.definitions = subgraph_definitions(data)
        extra = data.get("extra")
        groups = extra.get("groupNodes") if isinstance(extra, dict) else None
        self.group_nodes: dict[str, Any] = groups if isinstance(groups, dict) else {}
        self.visited: set[str] = set()
        self._graphs: dict[str, Graph] = {}
        held = len(as_list(data.get("nodes"))) + sum(len(as_list(d.get("nodes"))) for d in self.definitions.values())
        self.allowance = VISIT_ALLOWANCE + SPREAD_FACTOR * held
        self.visits = 0
        # (definition, forced mode) walked once the allowance is spent: each is not walked again.
        self.spent: set[tuple[str, str | None]] = set()

    def graph(self, sub_id: str) -> Graph:
        """Return the graph of subgraph ``sub_id``, built once however many instances it has."""
        graph = self._graphs.get(sub_id)
        if graph is None:
            graph = self._graphs[sub_id] = Graph.of(self.definitions[sub_id])
        return graph

    def run(self) -> None:
        top = Graph.of(self.data)
        self.walk(_Frame(iter(top.nodes), top, [], "", None, {}, None))
        # A definition no instance reaches is not run by ComfyUI, but its loaders and declarations still say
        # what the author meant to ship; list them as they stand (this also covers broken instance chains).
        for sub_id, definition in self.definitions.items():
            if sub_id not in self.visited:
                self.visited.add(sub_id)
                graph = self.graph(sub_id)
                self.walk(_Frame(iter(graph.nodes), graph, [_subgraph_name(definition)], "", None, {}, sub_id))
        for decl in _declarations(self.data.get("models")):
            name, directory = decl["name"], decl["directory"]
            self.out.add_model(name, directory, "workflow", "workflow", None, [], "active", "declared", decl)

    def walk(self, top: _Frame) -> None:
        """Visit every node of ``top`` and, depth first and in order, of every instance inside it."""
        frames = [top]
        inside = {top.sub_id}  # the definitions on the current path: an instance of one of them is a cycle
        while frames:
            frame = frames[-1]
            child = self._walk_level(frame, inside)
            if child is None:
                frames.pop()
                inside.discard(frame.sub_id)
            else:
                frames.append(child)
                inside.add(child.sub_id)

    def _walk_level(self, frame: _Frame, inside: set[str | None]) -> _Frame | None:
        """Visit the nodes of ``frame`` still to visit; return the frame of the first instance met whose
        subgraph is walked (the rest of ``frame`` waits for it), or None when the level is done.

        Every node passes here, so the common case (a node that is no instance, group node, loader or
        overridden node, and holds no string worth a look) is decided inline, without a call.
        """
        out = self.out
        types = out.nodes
        loaders = self.loaders
        definitions = self.definitions
        group_nodes = self.group_nodes
        overrides = frame.overrides
        forced = frame.forced
        prefix = frame.prefix
        visits = self.visits  # counted here, kept in self.visits whenever another method reads it
        for node in frame.nodes:
            visits += 1
            node_type = node.get("type")
            if not isinstance(node_type, str):
                continue
            local_id = str(node.get("id"))
            node_id = prefix + local_id if prefix else local_id
            if forced is not None:
                mode = forced
            else:
                raw_mode = node.get("mode")
                # Absent, 0 (nearly every node) or not an integer: the node runs.
                mode = INACTIVE_MODES.get(raw_mode, "active") if raw_mode and type(raw_mode) is int else "active"
            properties: Any = node.get("properties")
            has_properties = isinstance(properties, dict)
            child = None
            if definitions and node_type in definitions:
                self.visits = visits
                child = self._instance(node, local_id, node_id, node_type, mode, frame, inside)
                visits = self.visits
            elif group_nodes and (group_name := group_node_name(node_type)) is not None and group_name in group_nodes:
                self._walk_group(node, node_id, group_name, frame.path, mode)
            else:
                ref = types.get(node_type)
                if ref is None:
                    ref = out.add_node(node_type, node_id, mode)
                else:  # add_node's own work, inlined for the type met before (most nodes)
                    ref["node_ids"].append(node_id)
                    ref["modes"].append(mode)
                if has_properties and "made_with" not in ref:
                    found = _made_with(properties)
                    if found is not None:
                        ref["made_with"] = found
                values = node.get("widgets_values")
                if (
                    (overrides and local_id in overrides)
                    or node_type in loaders
                    or (isinstance(values, list) and values and _any_candidate(values))
                    or (isinstance(values, dict) and _any_candidate(values.values()))
                ):
                    self._values(node, local_id, node_id, node_type, frame.graph, frame.path, mode, overrides, values)
            if has_properties and "models" in properties:
                for decl in _declarations(properties["models"]):
                    out.add_model(
                        decl["name"], decl["directory"], node_id, node_type, None, frame.path, mode, "declared", decl
                    )
            if child is not None:
                self.visits = visits
                return child
        self.visits = visits
        return None

    def _instance(
        self,
        node: dict[str, Any],
        local_id: str,
        node_id: str,
        sub_id: str,
        mode: str,
        frame: _Frame,
        inside: set[str | None],
    ) -> _Frame | None:
        """Return the frame of the subgraph ``node`` instantiates, or None when it is not walked (again)."""
        if sub_id in inside:
            logger.debug("subgraph %s contains itself; not walked again", sub_id)
            return None
        # An instance that is muted or bypassed takes everything inside it along.
        forced = mode if mode != "active" else None
        if self.visits > self.allowance:
            if (sub_id, forced) in self.spent:
                return None
            self.spent.add((sub_id, forced))
        self.visited.add(sub_id)
        inner = self._promotions(node, local_id, sub_id, frame.graph, frame.overrides)
        graph = self.graph(sub_id)
        self.visits += len(inner)
        path = [*frame.path, _subgraph_name(self.definitions[sub_id])]
        return _Frame(iter(graph.nodes), graph, path, node_id + ":", forced, inner, sub_id)

    def _values(
        self,
        node: Mapping[str, Any],
        local_id: str,
        node_id: str,
        node_type: str,
        graph: Graph,
        path: list[str],
        mode: str,
        overrides: Overrides,
        values: Any = None,
    ) -> None:
        if node_type in NO_OWN_FILES:
            return
        values = node.get("widgets_values") if values is None else values
        specs = self.loaders.get(node_type)
        own = overrides.get(local_id) if overrides else None
        if not specs:
            for widget, (value, _via) in own.items() if own else ():
                if isinstance(value, str):
                    self._scan_text(value, widget, node_id, node_type, path, mode, True)
            for text, name, _direct in _texts(node, values, [None]):
                self._scan_text(text, name, node_id, node_type, path, mode, True)
            return
        widget_names, linked = _inputs_of(node)
        add_model = self.out.add_model
        # What _loader_value and _widget_value do, inlined: this runs for every loader node of every workflow.
        listed = values if isinstance(values, list) else None
        # Recent frontends list every widget as an input; when they line up with the values, trust their order.
        lined_up = listed is not None and len(widget_names) == len(listed)
        for spec in specs:
            name = spec.input
            promoted = own.get(name) if own else None
            if promoted is not None:
                value, via = promoted
            elif linked and (source := _primitive_source(graph, linked, name)) is not None:
                value, via = source, "primitive"
            else:
                via = "widget"
                if listed is not None:
                    index = widget_names.index(name) if lined_up and name in widget_names else spec.index
                    value = listed[index] if 0 <= index < len(listed) else None
                else:
                    value = values.get(name) if isinstance(values, dict) else None
            # spec.names_file(value), inlined
            if isinstance(value, str) and (spec.extensionless or value.strip().lower().endswith(spec.endings)):
                add_model(value, spec.folder, node_id, node_type, name, path, mode, via)
        # A loader's other strings can only name embeddings (the fallback is for nodes outside the table):
        # most hold none, and then there is nothing to look at.
        if (own and any(isinstance(v, str) and IDENTIFIER in v for v, _via in own.values())) or _any_identifier(values):
            taken = {spec.input for spec in specs}
            self._loader_embeddings(node, values, own, taken, widget_names, node_id, node_type, path, mode)

    def _loader_embeddings(
        self,
        node: Mapping[str, Any],
        values: Any,
        own: Mapping[str, tuple[Any, str]] | None,
        taken: set[str],
        widget_names: list[str],
        node_id: str,
        node_type: str,
        path: list[str],
        mode: str,
    ) -> None:
        """Add the embeddings named by a loader's strings other than its model inputs (``taken``): those an
        instance promotes onto it (``own``) and its own widget values."""
        if own and any(isinstance(v, str) and IDENTIFIER in v for v, _via in own.values()):
            for widget, (value, _via) in own.items():
                if widget not in taken and isinstance(value, str):
                    self._scan_text(value, widget, node_id, node_type, path, mode, False)
        if _any_identifier(values):
            for text, name, direct in _texts(node, values, [widget_names]):
                if not (direct and name in taken):
                    self._scan_text(text, name, node_id, node_type, path, mode, False)

    def _scan_text(
        self,
        value: str,
        input_name: str | None,
        node_id: str,
        node_type: str,
        path: list[str],
        mode: str,
        fallback: bool,
    ) -> None:
        """Add the embeddings ``value`` names and, for a node outside the loader table, ``value`` itself when it
        looks like a model file."""
        for embedding in embeddings.names_in(value):
            self.out.add_model(embedding, "embeddings", node_id, node_type, input_name, path, mode, "prompt")
        if fallback and _looks_like_model(value):
            self.out.add_model(value, None, node_id, node_type, input_name, path, mode, "fallback")

    def _promotions(
        self,
        instance: Mapping[str, Any],
        local_id: str,
        sub_id: str,
        graph: Graph,
        overrides: Overrides,
    ) -> Overrides:
        """Return the values ``instance`` sets on the nodes inside subgraph ``sub_id``, keyed by inner node."""
        inner = self.graph(sub_id)
        sub_inputs = _sub_inputs(self.definitions[sub_id])
        slots = _slots(instance, inner, sub_inputs)
        result: Overrides = {}
        for targets, value in _promoted(slots, instance.get("widgets_values")):
            _set_all(result, targets, (value, "promoted"))
        # Values reaching the instance from outside: an enclosing instance's promotion, or a PrimitiveNode.
        outside = dict(overrides.get(local_id, {}))
        outside.update(_primitive_inputs(instance, graph))
        by_name: dict[str, list[list[tuple[str, str]]]] = {}
        for name, targets in slots:
            by_name.setdefault(name, []).append(targets)
        for name, value in outside.items():
            if name in by_name:
                for targets in by_name[name]:
                    _set_all(result, targets, value)
            elif name in sub_inputs:
                _set_all(result, inner.input_targets(sub_inputs[name], widgets_only=False), value)
        return result

    def _walk_group(self, node: Mapping[str, Any], node_id: str, name: str, path: list[str], mode: str) -> None:
        """Walk a legacy group node: its inner nodes, with the instance's widget values when they line up."""
        group = self.group_nodes.get(name)
        inner_nodes = group.get("nodes") if isinstance(group, dict) else None
        if not isinstance(inner_nodes, list):
            return
        inner_nodes = [n for n in inner_nodes if isinstance(n, dict) and isinstance(n.get("type"), str)]
        sizes = [len(n["widgets_values"]) if isinstance(n.get("widgets_values"), list) else 0 for n in inner_nodes]
        values = node.get("widgets_values")
        sliced = isinstance(values, list) and len(values) == sum(sizes) and sum(sizes) > 0
        position = 0
        sub_path = [*path, f"group node {name}"]
        empty = Graph([], {}, {})
        for index, inner in enumerate(inner_nodes):
            inner_id = f"{node_id}:{inner.get('index', index)}"
            own = (
                values[position : position + sizes[index]]
                if sliced and isinstance(values, list)
                else inner.get("widgets_values")
            )
            position += sizes[index]
            self.out.add_node(inner["type"], inner_id, mode)
            self._values(inner, "", inner_id, inner["type"], empty, sub_path, mode, {}, own if own is not None else [])
            properties = inner.get("properties")
            if isinstance(properties, dict):
                for decl in _declarations(properties.get("models")):
                    self.out.add_model(
                        decl["name"], decl["directory"], inner_id, inner["type"], None, sub_path, mode, "declared", decl
                    )


# One promoted widget of an instance: its name, and the (inner node id, widget name) pairs it sets.
Slot = tuple[str, list[tuple[str, str]]]


def _sub_inputs(definition: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Return the inputs of a subgraph definition by name (unnamed or broken entries left out)."""
    entries = as_list(definition.get("inputs"))
    return {i["name"]: i for i in entries if isinstance(i, dict) and isinstance(i.get("name"), str)}


def _slots(instance: Mapping[str, Any], inner: Graph, sub_inputs: Mapping[str, Any]) -> list[Slot]:
    """Return the promoted widgets of ``instance`` in the order of its widget values.

    The frontend lists them in ``properties.proxyWidgets`` (``[inner node id, widget]``; ``-1`` for one
    promoted through a subgraph input); older files promote each subgraph input that reaches a widget.
    """
    properties = instance.get("properties")
    proxies = properties.get("proxyWidgets") if isinstance(properties, dict) else None
    if not (isinstance(proxies, list) and proxies):
        slots = [(name, inner.input_targets(sub_input, widgets_only=True)) for name, sub_input in sub_inputs.items()]
        return [(name, targets) for name, targets in slots if targets]
    found: list[Slot] = []
    for entry in proxies:
        if not (isinstance(entry, list) and len(entry) >= 2 and isinstance(entry[1], str)):
            found.append(("", []))  # keeps the later entries in line with their values
        elif str(entry[0]) == "-1":
            found.append((entry[1], inner.input_targets(sub_inputs.get(entry[1]), widgets_only=False)))
        else:
            found.append((entry[1], [(str(entry[0]), entry[1])]))
    return found


def _promoted(slots: list[Slot], values: Any) -> Iterator[tuple[list[tuple[str, str]], Any]]:
    """Yield ``(targets, value)`` for each slot the instance's widget values (a list in slot order, or a dict
    by name) give a value."""
    if isinstance(values, list) and values and len(values) == len(slots):
        for (_name, targets), value in zip(slots, values, strict=True):
            yield targets, value
    elif isinstance(values, dict):
        for name, targets in slots:
            if name in values:
                yield targets, values[name]


def _primitive_inputs(instance: Mapping[str, Any], graph: Graph) -> dict[str, tuple[Any, str]]:
    """Return input name -> (value, "primitive") for each input of ``instance`` a PrimitiveNode feeds."""
    found: dict[str, tuple[Any, str]] = {}
    for entry in as_list(instance.get("inputs")):
        if isinstance(entry, dict) and entry.get("link") is not None and isinstance(entry.get("name"), str):
            primitive = graph.primitive_value(entry["link"])
            if primitive is not None:
                found[entry["name"]] = (primitive, "primitive")
    return found


def _set_all(result: Overrides, targets: list[tuple[str, str]], value: tuple[Any, str]) -> None:
    for inner_id, widget in targets:
        result.setdefault(inner_id, {})[widget] = value


def _texts(node: Mapping[str, Any], values: Any, names: list[list[str] | None]) -> Iterator[tuple[str, Any, bool]]:
    """Yield ``(string, input name, direct)`` for each widget string of ``values`` that may name a file; nested
    one level too (packs do: rgthree's Power Lora Loader holds {"lora": "x.safetensors", ...}), with ``direct``
    False. ``names`` holds the node's widget input names once worked out (only for the rare value that names
    something)."""
    items = values.items() if isinstance(values, dict) else enumerate(values) if isinstance(values, list) else ()
    for key, value in items:
        if isinstance(value, str):
            if _worth_a_look(value):
                yield value, _input_name(node, key, values, names), True
        elif isinstance(value, (dict, list)):
            nested = value.items() if isinstance(value, dict) else ((None, v) for v in value)
            for inner_key, inner_value in nested:
                if isinstance(inner_value, str) and _worth_a_look(inner_value):
                    name = inner_key if isinstance(inner_key, str) else (key if isinstance(key, str) else None)
                    yield inner_value, name, False


def _input_name(node: Mapping[str, Any], key: Any, values: Any, names: list[list[str] | None]) -> Any:
    """Return the input name of widget value ``key`` (a dict key is its own name; a list position is named
    when the node lists as many widget inputs as it has values)."""
    if not isinstance(key, int):
        return key
    known = names[0]
    if known is None:
        known = names[0] = _widget_inputs(node)
    return known[key] if len(known) == len(values) else None


def _subgraph_name(definition: Mapping[str, Any]) -> str:
    return str(definition.get("name") or definition.get("id"))


def _widget_inputs(node: Mapping[str, Any]) -> list[str]:
    names_: list[str] = []
    for entry in as_list(node.get("inputs")):
        if isinstance(entry, dict) and isinstance(entry.get("widget"), dict):
            name = entry["widget"].get("name")
            if isinstance(name, str):
                names_.append(name)
    return names_


def _inputs_of(node: Mapping[str, Any]) -> tuple[list[str], list[tuple[Any, Any]]]:
    """Return the widget input names of ``node`` and ``(input name, link id)`` for each input fed by a link
    (the widget's name when the input is a converted widget), in one pass over its inputs."""
    names_: list[str] = []
    linked: list[tuple[Any, Any]] = []
    inputs = node.get("inputs")
    if not isinstance(inputs, list):
        return names_, linked
    # Every loader node of every workflow passes here: each key is read once, and an input without a widget
    # (most sockets) is told by ``is None`` before any isinstance call.
    for entry in inputs:
        if not isinstance(entry, dict):
            continue
        widget = entry.get("widget")
        link = entry.get("link")
        if widget is not None and isinstance(widget, dict):
            name = widget.get("name")
            if isinstance(name, str):
                names_.append(name)
            if link is not None:
                linked.append((name, link))
        elif link is not None:
            linked.append((entry.get("name"), link))
    return names_, linked


def _primitive_source(graph: Graph, linked: list[tuple[Any, Any]], name: str) -> Any:
    """Return the value the first PrimitiveNode feeding input ``name`` (among ``linked``) sends, or None."""
    for linked_name, link in linked:
        if linked_name == name:
            source = graph.primitive_value(link)
            if source is not None:
                return source
    return None


def _any_candidate(values: Iterable[Any]) -> bool:
    """Return whether any of ``values`` may name a file: a string worth a look, or a nested dict or list (the
    cheap test of ``_worth_a_look``, inlined: it runs on every widget value of every node)."""
    for value in values:
        kind = type(value)
        # The values JSON gives, by exact type first (one test each: strings, then numbers); anything else by
        # isinstance, as before.
        if kind is str:
            if IDENTIFIER in value or ("." in value and _looks_like_model(value)):
                return True
        elif kind is int or kind is float or kind is bool or value is None:
            continue
        elif isinstance(value, str):
            if IDENTIFIER in value or ("." in value and _looks_like_model(value)):
                return True
        elif isinstance(value, (dict, list)):
            return True
    return False


def _any_identifier(values: Any) -> bool:
    """Return whether a string among ``values`` (a list or dict, nested one level as ``_texts`` reads them)
    holds ``embedding:``."""
    items = values.values() if isinstance(values, dict) else values if isinstance(values, list) else ()
    for value in items:
        kind = type(value)
        # Numbers first, by exact type (a loader's strengths and sizes): one test each instead of three.
        if kind is float or kind is int or value is None:
            continue
        if kind is str or isinstance(value, str):
            if IDENTIFIER in value:
                return True
        elif isinstance(value, dict):
            if any(isinstance(v, str) and IDENTIFIER in v for v in value.values()):
                return True
        elif isinstance(value, list) and any(isinstance(v, str) and IDENTIFIER in v for v in value):
            return True
    return False


def _worth_a_look(value: str) -> bool:
    """Return whether a widget string may name an embedding or a model file (a cheap test, most say no)."""
    return embeddings.IDENTIFIER in value or _looks_like_model(value)


def _looks_like_model(value: str) -> bool:
    dot = value.rfind(".")
    if dot < 0 or len(value) > MAX_FALLBACK_CHARS or value[dot:].strip().lower() not in MODEL_EXTENSIONS:
        return False
    return "\n" not in value and "://" not in value


def _extract_api(data: Mapping[str, Any], loaders: Mapping[str, list[LoaderInput]], out: _Collector) -> None:
    for raw_id, node in data.items():
        class_type = node.get("class_type")
        if not isinstance(class_type, str):
            continue
        node_id = str(raw_id)
        out.add_node(class_type, node_id, "active")
        inputs = node.get("inputs") if isinstance(node.get("inputs"), dict) else {}
        specs = loaders.get(class_type)
        taken = set()
        for spec in specs or ():
            value = inputs.get(spec.input)
            # A linked input is [node id, slot]: its value is not known statically.
            if spec.names_file(value):
                out.add_model(value, spec.folder, node_id, class_type, spec.input, [], "active", "widget")
            taken.add(spec.input)
        for input_name, value in inputs.items():
            if not isinstance(value, str) or input_name in taken or not _worth_a_look(value):
                continue
            for embedding in embeddings.names_in(value):
                out.add_model(embedding, "embeddings", node_id, class_type, input_name, [], "active", "prompt")
            if not specs and _looks_like_model(value):
                out.add_model(value, None, node_id, class_type, input_name, [], "active", "fallback")
