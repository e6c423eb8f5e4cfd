"""Search: for every missing model, find where it can be had; write ``search.json`` and ``download_queue.json``.

Order for each file: an invalid name is INVALID_FILENAME with no request; the offline sources (the workflow's
own declaration, then ComfyUI-Manager's model list: backends with ``answers_first``); then the backends in
``search.backend_order`` (or ``--backends``). ``--offline`` asks no backend that needs the network: whatever
the offline sources leave open is NOT_SEARCHED.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, cast

import orjson

from comfywatchman import artifacts, catalogue, lazy, progress, stage_inputs
from comfywatchman.comfy.manager_files import find_manager_file
from comfywatchman.search import declared, policy, registry, reuse
from comfywatchman.search import model_list as model_list_module
from comfywatchman.search.base import (
    Declaration,
    ModelQuery,
    SearchBackend,
    SearchContext,
    SearchResult,
    Status,
)
from comfywatchman.search.cache import SearchCache
from comfywatchman.search.http import HttpClient
from comfywatchman.search.model_list import ManagerModelListBackend
from comfywatchman.search.names import invalid_filename_reason, lookup_key, normalise
from comfywatchman.stages import search_digests
from comfywatchman.stages.context import StageContext, StageOutcome
from comfywatchman.stages.scan_parts import ScanParts
from comfywatchman.stages.search_inputs import inputs_fingerprint
from comfywatchman.stages.search_inputs import outputs as output_paths
from comfywatchman.workflow import names as workflow_names

if TYPE_CHECKING:
    from comfywatchman.reporting import answers as report_answers
    from comfywatchman.stages import search_delta as delta_module
else:
    # Imported when first used: a search where nothing changed returns before it.
    delta_module = lazy.module("comfywatchman.stages.search_delta")
    report_answers = lazy.module("comfywatchman.reporting.answers")

logger = logging.getLogger(__name__)


def missing_part(workflow: Mapping[str, Any]) -> list[Any]:
    """Return what the search takes from one scan.json workflow entry (plain JSON, kept between cycles by
    ``ScanParts``): ``[path, [[folder, name, active, declarations, lookup key], ...]]`` of each model not
    installed, each declaration ``[name, url, directory, hash, hash_type]``."""
    models = [
        [
            model["folder"],
            model["name"],
            model["active"],
            [[d["name"], d["url"], d["directory"], d["hash"], d["hash_type"]] for d in model["declarations"]],
            # Not the memoised lookup_key: the scan takes the parts of every entry it makes (scan_parts.Primer),
            # and a memo filled with each name there would only be let go after.
            workflow_names.lookup_key(model["name"]),
        ]
        for model in workflow["models"]
        if model["status"] != "installed"
    ]
    return [workflow["path"], models]


#: One missing file while the queries are grouped: its name and folder as first met, its declarations' fields
#: and its workflows (dicts as ordered sets).
_Grouped = tuple[str, str | None, dict[tuple[Any, ...], None], dict[str, None]]


def group_missing(parts: Iterable[list[Any]], count_inactive: bool) -> list[ModelQuery]:
    """Return one query per distinct missing file ``(folder, name)`` over the workflows' ``missing_part``,
    with its workflows, in the order of folder and name."""
    # Each file's declarations as a dict keyed by their fields (the order they were first met, each once: a
    # Declaration equals another exactly when its fields do), made into Declarations once per file.
    grouped: dict[tuple[str | None, str], _Grouped] = {}
    for path, models in parts:
        for folder, name, active, decl_rows, key in models:
            if not (active or count_inactive):
                continue
            entry = grouped.get((folder, key))
            if entry is None:
                entry = grouped[(folder, key)] = (name, folder, {}, {})
            for row in decl_rows:
                entry[2][tuple(row)] = None
            entry[3][path] = None
    return [
        ModelQuery(name, folder, tuple([Declaration(*row) for row in decls]) if decls else (), tuple(paths))
        for (name, folder, decls, paths) in (
            grouped[key] for key in sorted(grouped, key=lambda key: (key[0] or "~", key[1]))
        )
    ]


#: What the search keeps of each scan.json workflow (``missing_part``): bump when that changes.
PARTS_TAG = "search-parts-2"


def build_backends(names_in_order: Sequence[str], context: SearchContext) -> list[SearchBackend]:
    """Return an instance of each named backend, in order."""
    return [registry.backend_class(name)(context) for name in names_in_order]


def first_sources(context: SearchContext) -> list[SearchBackend]:
    """Return an instance of every offline source (``answers_first``), the workflow's declaration first."""
    return [cls(context) for cls in registry.first_sources()]


def ask_backends(query: ModelQuery, backends: Iterable[SearchBackend], offline: bool) -> list[SearchResult]:
    """Return each backend's answer for ``query`` until one proves a FOUND (a failing backend answers ERROR
    through ``SearchBackend.search``, and the next one goes on)."""
    answers = []
    for backend in backends:
        if offline and backend.needs_network:
            answers.append(SearchResult(query.name, query.folder, Status.NOT_SEARCHED, backend.name, reason="offline"))
            continue
        answer = backend.search(query)
        answers.append(answer)
        if policy.may_queue(answer):
            break
    return answers


# Plain classes, not dataclasses: every cycle's process makes these classes, and a dataclass costs it ~0.2 ms to
# make (Python 3.11).
class OfflineBlank:
    """The answer to a file no offline source knows, with ``--offline`` and only backends that need the
    network: each backend says NOT_SEARCHED "offline", and ``policy.combine`` makes of that the same answer
    for every such file, bar its name and folder. Taken from the first such answer the full path made, and
    given to the others (most missing files of an offline cycle) without asking each backend and combining
    again: the answers ``ask_backends`` gives offline depend on the backends' names alone."""

    __slots__ = ("attempts", "pieces", "reason", "rest")

    reason: str
    attempts: list[dict[str, str]]
    #: The result as JSON without name and type (``answer_text`` puts them in, and the workflows).
    rest: dict[str, Any]
    #: The text of the result cut where name, type and workflows go, once made (``_cut``; empty: not cut).
    pieces: tuple[str, ...] | None

    def __init__(
        self, reason: str, attempts: list[dict[str, str]], rest: dict[str, Any], pieces: tuple[str, ...] | None = None
    ) -> None:
        self.reason, self.attempts, self.rest, self.pieces = reason, attempts, rest, pieces

    @staticmethod
    def applies(ctx: StageContext, backends: Sequence[SearchBackend]) -> bool:
        """Return whether every file no offline source knows gets the same answer this cycle."""
        return bool(ctx.config.offline and backends and all(b.needs_network for b in backends))

    @classmethod
    def from_result(cls, result: SearchResult) -> OfflineBlank:
        """Return the blank made of ``result``, the answer the full path gave to one such file."""
        item = result.to_json()
        rest = {k: v for k, v in item.items() if k not in ("name", "type")}
        # Its own attempts (a copy): ``result`` itself goes the long way into search.json, validated there.
        return cls(result.reason, [dict(a) for a in result.attempts], rest)

    def result(self, query: ModelQuery) -> SearchResult:
        """Return the answer to ``query``, as ``policy.combine`` makes it (its ``attempts`` list is the
        blank's own: a result made here is turned into text and never changed)."""
        return SearchResult(
            query.name, query.folder, Status.NOT_SEARCHED, "search", reason=self.reason, attempts=self.attempts
        )

    def made(self, result: SearchResult) -> bool:
        """Return whether ``result`` was made by ``self.result`` (it holds the blank's own ``attempts``)."""
        return result.attempts is self.attempts

    def answer_text(self, query: ModelQuery) -> str:
        """Return the search.json text of the answer to ``query`` (what ``artifacts.part_text`` gives for it:
        the blank was validated as a whole, and name, type and workflows are strings, null and a list of
        strings, which the schema allows whatever they hold)."""
        pieces = self.pieces if self.pieces is not None else self._cut()
        if pieces:
            # The blank's text with the query's three values put in: what encoding the whole object gives (its
            # keys sorted; the three values hold no object), without encoding the rest again each time.
            values = _plain_json(query.name, query.folder, query.workflows)
            if values is not None:
                name, kind, workflows = values
                return f"{pieces[0]}{name}{pieces[1]}{kind}{pieces[2]}{workflows}{pieces[3]}"
            try:
                name, kind, workflows = (
                    orjson.dumps(query.name).decode(),
                    orjson.dumps(query.folder).decode(),
                    orjson.dumps(query.workflows).decode(),
                )
            except TypeError:
                pass  # a value orjson refuses (a lone surrogate): encoded the long way, as ``artifacts.dumps`` does
            else:
                return f"{pieces[0]}{name}{pieces[1]}{kind}{pieces[2]}{workflows}{pieces[3]}"
        item = {**self.rest, "name": query.name, "type": query.folder, "workflows": list(query.workflows)}
        return artifacts.dumps(item, indent=None)[:-1]

    def _cut(self) -> tuple[str, ...]:
        """Return the blank's text cut where name, type and workflows go (``pieces``): empty when it cannot be
        cut (the stand-ins for the three values are found elsewhere in it too)."""
        marks = ("\x00name\x00", "\x00type\x00", "\x00workflows\x00")
        item = {**self.rest, "name": marks[0], "type": marks[1], "workflows": marks[2]}
        try:
            text = orjson.dumps(item, option=orjson.OPT_SORT_KEYS).decode()  # as ``artifacts.dumps`` encodes it
        except TypeError:  # what orjson refuses ``artifacts.dumps`` encodes another way: not cut
            self.pieces = ()
            return self.pieces
        quoted = [orjson.dumps(mark).decode() for mark in marks]
        pieces: list[str] = []
        rest = text
        for mark in quoted:
            before, found, rest = rest.partition(mark)
            if not found or mark in before or mark in rest:
                self.pieces = ()
                return self.pieces
            pieces.append(before)
        self.pieces = (*pieces, rest)
        return self.pieces


def _plain_json(name: str, folder: str | None, workflows: Sequence[str]) -> tuple[str, str, str] | None:
    """Return the JSON of ``name``, ``folder`` and the list ``workflows`` when every string is printable ASCII
    without a quote or a backslash (nearly every file name and path): each string as it is, in quotes, as any
    JSON encoder writes it (none of its characters is escaped); else None."""
    joined = '","'.join(workflows)
    text = f"{name}{folder or ''}{joined}"
    if not (text.isascii() and text.isprintable()) or "\\" in text or text.count('"') != 2 * max(len(workflows) - 1, 0):
        return None
    return f'"{name}"', "null" if folder is None else f'"{folder}"', f'["{joined}"]' if workflows else "[]"


class Resolver:
    """Resolves missing files for one cycle: the offline sources (``first``), the search cache, then the
    backends."""

    __slots__ = ("backends", "blank", "cache", "ctx", "first", "http", "waiting")

    ctx: StageContext
    backends: list[SearchBackend]
    http: HttpClient | None
    cache: SearchCache | None
    first: list[SearchBackend]
    #: Files left NOT_SEARCHED this cycle because the request budget was spent.
    waiting: int
    #: With --offline and only network backends, the answer to every file no offline source knows.
    blank: OfflineBlank | None

    def __init__(
        self,
        ctx: StageContext,
        backends: list[SearchBackend],
        http: HttpClient | None,
        cache: SearchCache | None,
        first: list[SearchBackend] | None = None,
        waiting: int = 0,
        blank: OfflineBlank | None = None,
    ) -> None:
        self.ctx, self.backends, self.http, self.cache = ctx, backends, http, cache
        self.first = [] if first is None else first
        self.waiting, self.blank = waiting, blank

    @property
    def order(self) -> tuple[str, ...]:
        return tuple(b.name for b in self.backends)

    def resolve(self, query: ModelQuery) -> SearchResult:
        """Return the combined result for one missing file."""
        reason = invalid_filename_reason(query.name)
        if reason is not None:
            return SearchResult(
                query.name, query.folder, Status.INVALID_FILENAME, "scan", reason=f"{reason}; never looked up"
            )
        offline_answers = self._first_answers(query)
        if not offline_answers and self.blank is not None:
            # Most files of an offline cycle: the blank is made offline only, where neither the search cache
            # nor the request budget below comes into play.
            return self.blank.result(query)
        now = self.ctx.now()
        if offline_answers and offline_answers[-1].status is Status.FOUND:
            return self._verified_declaration(query, offline_answers[-1], now)
        cached = self.cache.get(query, self.order, now) if self.cache and not self.ctx.config.offline else None
        if cached is not None:
            cached.details["cached"] = True
            return cached
        if self.budget_spent() and any(b.needs_network for b in self.backends) and not self.ctx.config.offline:
            return self._waiting(query, offline_answers)
        refused_before = self.http.deadline_refusals if self.http else 0
        answers = offline_answers + ask_backends(query, self.backends, self.ctx.config.offline)
        if not self.backends:
            answers.append(
                SearchResult(query.name, query.folder, Status.NOT_SEARCHED, "search", reason="no backend configured")
            )
        result = policy.combine(query.name, query.folder, answers)
        if result.status is Status.ERROR and any(a.details.get("error_kind") == "budget" for a in answers):
            # The budget ran out while this file was being searched: it waits, like the files after it.
            return self._waiting(query, answers)
        if self.http is not None and self.http.deadline_refusals > refused_before and not policy.may_queue(result):
            # The cycle's network deadline cut this search short: a half-asked answer is no answer; it waits.
            return self._waiting(query, answers, policy.DEADLINE_REACHED)
        if self.cache and not self.ctx.config.offline:
            self.cache.put(query, self.order, result, now)
        if not offline_answers and self.blank is None and OfflineBlank.applies(self.ctx, self.backends):
            self.blank = OfflineBlank.from_result(result)
        return result

    def budget_spent(self) -> bool:
        """Return whether the cycle's request budget is spent (no request could be sent any more)."""
        if self.http is None:
            return False
        return self.http.total_requests >= self.http.settings.max_requests

    def _waiting(self, query: ModelQuery, answers: list[SearchResult], why: str = policy.BUDGET_SPENT) -> SearchResult:
        """Return NOT_SEARCHED "not searched yet" for ``query`` (never cached; the next cycle asks), saying
        ``why`` (the request budget or the network deadline), keeping any candidate the offline sources offered."""
        self.waiting += 1
        attempts = [{"backend": r.source, "status": r.status.value, "reason": r.reason} for r in answers]
        result = policy.not_searched_yet(query.name, query.folder, why, attempts)
        result.candidates = [c for r in answers for c in r.candidates]
        return result

    def _first_answers(self, query: ModelQuery) -> list[SearchResult]:
        """Return what the offline sources say about ``query`` (those with nothing to say left out), stopping
        at the first FOUND, which is then last."""
        answers = []
        for source in self.first:
            if source.nothing_to_say(query):
                continue  # it would answer NOT_SEARCHED, which is left out
            answer = source.search(query)
            if answer.status is Status.NOT_SEARCHED:
                continue
            answers.append(answer)
            if answer.status is Status.FOUND:
                break
        return answers

    def _verified_declaration(self, query: ModelQuery, result: SearchResult, now: datetime) -> SearchResult:
        if self.http is None or self.ctx.config.offline:
            result.details["url_check"] = "not checked: offline"
            return policy.combine(query.name, query.folder, [result])
        # The HEAD answer is cached like any other, so a second cycle within the TTL sends nothing.
        cached = self.cache.get(query, ("declared",), now) if self.cache else None
        if cached is not None:
            cached.details["cached"] = True
            return cached
        checked = policy.combine(query.name, query.folder, [declared.verify(result, self.http, self.ctx.config)])
        if self.cache and "not checked" not in str(checked.details.get("url_check", "")):
            self.cache.put(query, ("declared",), checked, now)
        return checked


def priority(queries: list[ModelQuery]) -> list[int]:
    """Return the indexes of ``queries`` in the order the cycle's request budget is spent on them: the files
    that block the most workflows first (ties keep the query order, so cycles are repeatable)."""
    return sorted(range(len(queries)), key=lambda i: -len(queries[i].workflows))


def resolve_all(resolver: Resolver, queries: list[ModelQuery], track: bool = False) -> list[SearchResult]:
    """Return the result of every query, in the order of ``queries``, resolved in ``priority`` order.

    What the budget does not reach is NOT_SEARCHED "not searched yet" (never cached): the next cycle, whose
    cache holds this cycle's answers, spends its budget on those, so a large install converges in a few
    cycles. One line says how many wait, rather than a warning per file.
    """
    order = priority(queries)
    ordered = progress.track(order, len(order), "search", "model") if track else order
    results: list[SearchResult | None] = [None] * len(queries)
    for index in ordered:
        results[index] = resolver.resolve(queries[index])
    if resolver.waiting:
        logger.info(
            "search: request budget spent; %d of %d missing files are searched in the next cycles",
            resolver.waiting,
            len(queries),
        )
    return cast(list[SearchResult], results)  # each index is in ``order``


def target_path(result: SearchResult, model_cache: Mapping[str, Any]) -> str | None:
    """Return where a download of ``result`` would go: the first path of its folder type, subfolder kept.

    None when the folder type is unknown to the install or the name would leave the folder.
    """
    folder = model_cache["folders"].get(result.type or "")
    if not folder or not folder["paths"] or invalid_filename_reason(result.name):
        return None
    base, name = _folder_base(folder["paths"][0]), normalise(result.name)
    padded = f"/{name}/"
    if "//" in padded or "/./" in padded or base in (".", "/"):
        return str(PurePosixPath(base) / name)  # a path PurePosixPath would tidy: it does
    return f"{base}/{name}"  # what PurePosixPath gives for a plain relative name, without making one per file


@functools.lru_cache(maxsize=256)
def _folder_base(path: str) -> str:
    """Return a folder type's first path as a POSIX path's text (made once per folder: thousands of files are
    queued into a few folders)."""
    return str(PurePosixPath(path.replace("\\", "/")))


def download_queue(
    found: Sequence[tuple[SearchResult, ModelQuery] | dict[str, Any]],
    queries: list[ModelQuery],
    model_cache: Mapping[str, Any],
    others_of: Callable[[], dict[tuple[str | None, str], int]] | None = None,
) -> list[dict[str, Any]]:
    """Return one download task per distinct FOUND file (each with the query it answers; ``found`` need not
    hold the answers that cannot be queued, and may hold a task the last queue made for an answer that did not
    change: ``search_delta``), review required unless policy says otherwise. ``others_of``: how many
    workflows each query blocks by ``(folder, lookup key)``, when ``queries`` does not hold them."""
    others: dict[tuple[str | None, str], int] | None = None
    tasks = []
    for item in found:
        if isinstance(item, dict):
            tasks.append(item)
            continue
        result, query = item
        if not policy.may_queue(result):
            continue
        if result.type == query.folder:
            blocks = len(query.workflows)
        else:  # found in another folder type than the query's (a declaration's directory): that one's count
            if others is None:
                others = (
                    others_of() if others_of else {(q.folder, lookup_key(q.name)): len(q.workflows) for q in queries}
                )
            blocks = others.get((result.type, lookup_key(result.name)), 0)
        tasks.append(
            {
                "name": result.name,
                "folder": result.type,
                "target_path": target_path(result, model_cache),
                "url": result.url,
                "sha256": result.sha256,
                "size": result.size,
                "source": result.source,
                "evidence": result.evidence.value,
                "status": "pending_review" if policy.requires_review(result) else "approved",
                "requires_review": policy.requires_review(result),
                "blocks_workflows": blocks,
            }
        )
    return tasks


def folder_paths(path: Path) -> dict[str, Any]:
    """Return model_cache.json at ``path`` reduced to what the download queue needs: each folder type's
    paths (its list of files, the bulk of it, is dropped as soon as it is read)."""
    model_cache = artifacts.read(path, catalogue.schema("model_cache"))
    return {"folders": {folder: {"paths": group["paths"]} for folder, group in model_cache["folders"].items()}}


def kept_folder_paths(path: Path, recorded: Mapping[str, Any] | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return ``folder_paths`` of model_cache.json at ``path`` (as the last search recorded them, ``extra``
    ``folders``, when the file is as it was then: its size and mtime, the cache stage rewrites it only when its
    content changes; else read from it, megabytes for a few paths), and what the next search needs to do the
    same (the stat taken before the file was read, so a file replaced meanwhile is read again next time)."""
    kept = ((recorded or {}).get("extra") or {}).get("folders")
    stat = stage_inputs.stat_key(path)
    if isinstance(kept, dict) and stat is not None and kept.get("stat") == stat and isinstance(kept.get("paths"), dict):
        paths = kept["paths"]
    else:
        paths = {folder: group["paths"] for folder, group in folder_paths(path)["folders"].items()}
    return {"folders": {folder: {"paths": value} for folder, value in paths.items()}}, {"stat": stat, "paths": paths}


def valid_until(results: list[SearchResult], cache: SearchCache, offline: bool, now: datetime) -> datetime | None:
    """Return until when this cycle's results hold with the same inputs: now when a file waits for the
    budget or a backend failed (the next cycle asks again); online, the earliest expiry in the search cache
    (an answer that expires must be asked for again); else never (None)."""
    if offline:
        return None
    if any(r.status is Status.ERROR or r.status is Status.NOT_SEARCHED for r in results):
        return now
    expiries = [datetime.fromisoformat(e["expires_at"]) for e in cache.entries.values()]
    return min(expiries, default=None)


def answer_basis(ctx: StageContext, order: list[str]) -> str:
    """Return what every answer without network of this cycle is made under (``reuse.basis``)."""
    settings = {"search": ctx.config.section("search"), "offline": ctx.config.offline, "order": order}
    return reuse.basis(settings, find_manager_file(ctx.config.comfyui_root, model_list_module.FILE_NAME))


class Answers:
    """The answer to each query of a cycle, in query order: the result texts of search.json, their statuses,
    the key each is recorded under for the next cycle (None: asked again), and the FOUND answers as results
    (for the download queue)."""

    __slots__ = ("found", "fresh", "handed", "keys", "statuses", "texts")

    texts: list[str]
    statuses: list[str]
    keys: list[str | None]
    found: list[tuple[SearchResult, ModelQuery]]
    fresh: list[SearchResult]
    #: The report's answers to every result, when they are handed to it (``report_answers.Handed``).
    handed: report_answers.Handed | None

    def __init__(
        self,
        texts: list[str],
        statuses: list[str],
        keys: list[str | None],
        found: list[tuple[SearchResult, ModelQuery]],
        fresh: list[SearchResult],
        handed: report_answers.Handed | None = None,
    ) -> None:
        self.texts, self.statuses, self.keys, self.found, self.fresh = texts, statuses, keys, found, fresh
        self.handed = handed


def result_text(
    resolver: Resolver,
    result: SearchResult,
    query: ModelQuery,
    path: Path,
    handed: report_answers.Handed | None = None,
) -> str:
    """Return the search.json text of ``result``, the answer to ``query`` made this cycle, validated; added to
    ``handed`` (the report's answers) when given."""
    if resolver.blank is not None and resolver.blank.made(result):
        if handed is not None:
            handed.add_same(resolver.blank.rest)
        return resolver.blank.answer_text(query)
    item = {**result.to_json(), "workflows": list(query.workflows)}
    text = artifacts.part_text(item, "search", "result", f"{path} (result {query.name!r})")
    if handed is not None:
        handed.add(item, query.folder, query.name)
    return text


def answer_all(
    ctx: StageContext,
    resolver: Resolver,
    queries: list[ModelQuery],
    basis: str,
    fixed: bool,
    recorded: Mapping[str, Any] | None = None,
    hand: bool = False,
) -> Answers:
    """Return the answer to every query: reused from the last search.json where it was made under ``basis``
    from the same query and needed no network, else resolved. ``fixed``: every answer this cycle needs no
    network (``--offline`` with no local backend in the order), else only INVALID_FILENAME ones are.
    ``recorded``: the last search's record (``stage_inputs.previous``), read here when not given. ``hand``:
    gather the report's answers (``Answers.handed``) when every answer is made now (a reused one was not
    validated by this search)."""
    path = catalogue.path(ctx.config, "search")
    keys = [reuse.query_key(q) for q in queries]
    kept = reuse.previous_answers(ctx.state_dir, path, basis, keys, recorded)
    todo = [i for i, key in enumerate(keys) if key not in kept]
    fresh = resolve_all(resolver, [queries[i] for i in todo], track=True)
    answers = Answers([], [], [], [], fresh, report_answers.Handed() if hand and not kept else None)
    made = dict(zip(todo, fresh, strict=True))
    for index, (query, key) in enumerate(zip(queries, keys, strict=True)):
        result = made.get(index)
        if result is None:
            prefix = kept[key]
            status = reuse.status_of(prefix)
            answers.texts.append(reuse.with_workflows(prefix, query.workflows))
            if status == Status.FOUND.value:
                answers.found.append((SearchResult.from_json(artifacts.loads(prefix + "}")), query))
        else:
            status = result.status.value
            answers.texts.append(result_text(resolver, result, query, path, answers.handed))
            if result.status is Status.FOUND:
                answers.found.append((result, query))
        answers.statuses.append(status)
        answers.keys.append(key if fixed or status == Status.INVALID_FILENAME.value else None)
    if kept:
        logger.info("search: %d of %d answers reused from the last search", len(queries) - len(todo), len(queries))
    return answers


def line_digests(texts: Sequence[str], sized: bool) -> tuple[list[str], list[int]]:
    """Return the digest of each result line of search.json (``texts``), and with ``sized`` each one's length
    in bytes (else none)."""
    digests = [search_digests.line_digest(text.encode("utf-8")) for text in texts]
    if not sized:
        return digests, []
    # A text of ASCII alone (nearly all: JSON escapes nothing else, names are mostly ASCII) is as long as its
    # bytes; ``isascii`` reads a flag of the string.
    sizes = [len(text) if text.isascii() else len(text.encode("utf-8")) for text in texts]
    return digests, sizes


def _noting_paths(parts: Iterator[list[Any]], paths: list[str]) -> Iterator[list[Any]]:
    """Yield ``parts`` (``missing_part``), adding the workflow path of each to ``paths``."""
    for part in parts:
        paths.append(part[0])
        yield part


def again(
    ctx: StageContext,
    resolver: Resolver,
    parts: ScanParts,
    memo_path: Path,
    basis: str,
    count_inactive: bool,
    recorded: Mapping[str, Any] | None,
    outputs: list[Path],
    model_cache: Mapping[str, Any],
) -> delta_module.Delta | None:
    """Return this search made from the last one where few workflows changed (``search_delta``), or None when
    the full search must run (no memo going with the outputs on disk and these settings, another layout,
    too many changes)."""
    memo = delta_module.Memo.load(memo_path)
    keys = ((recorded or {}).get("extra") or {}).get("keys")
    if memo is None or memo.basis != basis or memo.count_inactive != count_inactive or not isinstance(keys, list):
        return None
    if memo.outputs != [stage_inputs.stat_key(p) for p in outputs]:
        return None
    digests = parts.scan(catalogue.path(ctx.config, "scan"))
    if digests is None:
        return None
    path = outputs[0]

    def answer(query: ModelQuery, key: str, kept: Mapping[str, str]) -> tuple[str, str, SearchResult | None]:
        if key in kept:
            return reuse.with_workflows(kept[key], query.workflows), reuse.status_of(kept[key]), None
        result = resolver.resolve(query)
        return result_text(resolver, result, query, path), result.status.value, result

    tasks = delta_module.kept_tasks(memo, outputs[1], model_cache)
    delta = delta_module.search_again(memo, parts, digests, path, keys, answer, tasks)
    if delta is not None:
        logger.info(
            "search: %d of %d missing files named by the workflows that changed grouped and answered again (the "
            "last answer reused where the query is the same); the others kept as they were",
            delta.touched,
            len(delta.texts),
        )
    return delta


def searched(ctx: StageContext, order: list[str]) -> StageOutcome:
    """Search for every missing model in ``scan.json`` with the backends of ``order`` (the stage's runner,
    ``search_inputs.run``, calls it when its check that nothing changed fails); write ``search.json`` and the
    download queue; return the outcome. scan.json is read one workflow at a time (only the missing files are
    kept) and the answers that need no network are reused from the last search where their query is the same
    (``search.reuse``)."""
    outcome = StageOutcome("search")
    outputs = output_paths(ctx)
    count_inactive = bool(ctx.config.section("scan")["count_inactive_nodes"])
    parts = ScanParts(catalogue.path(ctx.config, "search_parts"), PARTS_TAG, missing_part)
    recorded_before = stage_inputs.previous(ctx.state_dir, "search")
    model_cache, folders = kept_folder_paths(catalogue.path(ctx.config, "model_cache"), recorded_before)
    http = None if ctx.config.offline else HttpClient.from_config(ctx.config)
    context = SearchContext(config=ctx.config, now=ctx.now(), http=http)
    cache = SearchCache.from_config(ctx.config)
    first = first_sources(context)
    backends = build_backends(order, context)
    resolver = Resolver(ctx, backends, http, cache, first)
    basis = answer_basis(ctx, order)
    fixed = ctx.config.offline and all(b.needs_network for b in backends)
    memo_path = catalogue.path(ctx.config, "search_delta")
    delta = (
        again(ctx, resolver, parts, memo_path, basis, count_inactive, recorded_before, outputs, model_cache)
        if fixed
        else None
    )
    found: Sequence[tuple[SearchResult, ModelQuery] | dict[str, Any]]
    if delta is not None:
        answers = Answers([], [], delta.keys, [], delta.fresh)  # its texts: delta.texts, bytes
        found = delta.found
        queries: list[ModelQuery] = []
        qids, paths = delta.qids, delta.paths
    else:
        paths = []
        queries = group_missing(_noting_paths(parts.read(catalogue.path(ctx.config, "scan")), paths), count_inactive)
        # The report's answers are handed to it when it keeps none (a first cycle): it then parses no line
        # of search.json. Where it keeps some, it finds what changed since them, which a hand-over would hide.
        hand = not outputs[0].with_name(report_answers.KEPT).exists()
        answers = answer_all(ctx, resolver, queries, basis, fixed, recorded_before, hand)
        qids = [(q.folder, lookup_key(q.name)) for q in queries]
        found = answers.found
    cache.save(ctx.now())
    counts: dict[str, int] = {status.value: 0 for status in Status}
    for status in answers.statuses:
        counts[status] += 1
    if delta is not None:  # the last search's counts, those of the lines made again changed
        counts.update(delta.counts)
    model_list = next((b.model_list.source for b in first if isinstance(b, ManagerModelListBackend)), None)
    head = {
        "cycle_id": ctx.cycle_id,
        "generated_at": ctx.now().isoformat(timespec="seconds"),
        "offline": ctx.config.offline,
        "backend_order": order,
        "model_list": model_list,
        "results": [],
        "counts": counts,
        "requests": http.request_counts() if http else {},
        "cache_hits": cache.hits,
    }
    settling = None
    try:
        if delta is not None:
            last_digests = search_digests.load(outputs[0])  # of the search.json about to be replaced
            # Its fsync (megabytes) runs while the download queue is made; settled before the queue is written,
            # so a reader finds search.json new first, as before.
            settling = delta_module.write_results(outputs[0], head, delta.texts, catalogue.schema("search"))
            digests = search_digests.digests_of(delta.texts, delta.origins, last_digests)
            delta.texts.clear()
        else:
            artifacts.write_assembled(outputs[0], head, "results", answers.texts, catalogue.schema("search"))
            digests, sizes = line_digests(answers.texts, answers.handed is not None)
            answers.texts.clear()
        queue = {
            "cycle_id": ctx.cycle_id,
            "generated_at": head["generated_at"],
            "tasks": download_queue(found, queries, model_cache, delta.others if delta else None),
        }
    except BaseException:
        if settling is not None:
            settling.abandon()  # search.json stays the last one, whole
        raise
    if settling is not None:
        settling.settle()
    search_digests.save(outputs[0], digests)
    if answers.handed is not None:
        report_answers.hand_over(
            outputs[0], answers.handed, qids, answers.statuses, digests, sizes, ctx.config.offline, model_list
        )
        answers.handed = None
    artifacts.write(outputs[1], queue, catalogue.schema("download_queue"))
    outcome.counts = {k.lower(): v for k, v in counts.items()}
    outcome.counts["requests"] = http.total_requests if http else 0
    outcome.counts["cache_hits"] = cache.hits
    outcome.detail = ", ".join(f"{v} {k}" for k, v in counts.items() if v) or "nothing missing"
    until = valid_until(answers.fresh, cache, ctx.config.offline, ctx.now())
    # Taken again: this search may have just saved the search cache, which the next cycle finds as it is now.
    after = inputs_fingerprint(ctx, order)
    extra = {"basis": basis, "keys": answers.keys, "folders": folders}
    stage_inputs.record(
        ctx.state_dir, "search", ctx.cycle_id, after, outputs, until, outcome.counts, outcome.detail, extra
    )
    if fixed:
        lines = delta.found_lines if delta is not None else [i for i, s in enumerate(answers.statuses) if s == "FOUND"]
        # The FOUND lines that made a task (a kept task made one), in the queue's order: ``found`` is in theirs.
        queued = [
            at for at, item in zip(lines, found, strict=True) if isinstance(item, dict) or policy.may_queue(item[0])
        ]
        memo = delta_module.memo_of(
            basis, count_inactive, outputs, parts.digests, paths, qids, lines, queued, model_cache
        )
        delta_module.save(memo_path, memo)
    elif memo_path.exists():
        memo_path.unlink()  # made by an offline search: this one's answers are not all fixed
    logger.info(
        "search: %d missing files: %s (%d requests, %d cached answers)",
        len(qids),
        outcome.detail,
        outcome.counts["requests"],
        cache.hits,
    )
    return outcome
