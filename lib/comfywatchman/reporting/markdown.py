"""Render ``master_status.json`` as ``master_status.md``: a first screen that says what to do.

The page is the summary, every ranked action with what to paste, the workflows that are not ready grouped by
what blocks them, the ready ones as one compact list, then recent intake and this cycle. It stays small at
scale: searches wait in one item per reason, long tails of downloads share one command per Hub repository and
folder, and the per-item details past a few dozen are left to master_status.json (which keeps everything).
Built in one pass over the actions and one over the workflows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from comfywatchman import humanize
from comfywatchman.reporting import commands
from comfywatchman.reporting.mdsyntax import code, fence, link, number, plural, text
from comfywatchman.reporting.verification import drift_detail

LABELS = {
    "ready": "ready",
    "resolvable": "ready after the steps below",
    "needs_review": "need review",
    "blocked": "blocked",
    "error": "unreadable",
}
KIND_LABELS = {
    "download": "Download models",
    "get_access": "Get access",
    "install_pack": "Install packs",
    "enable_pack": "Re-enable packs",
    "choose_pack": "Choose a pack",
    "find_pack": "Find a pack",
    "check_pack": "Check installed packs",
    "review": "Review candidates",
    "find_manually": "Find by hand",
    "fix_workflow": "Fix workflows",
    "retry": "Search again (failed)",
    "search": "Wait for a search",
    "replace_drift": "Replace drifted files",
}
FULL_ITEMS_PER_KIND = 25  # actions of one kind shown one by one; the rest share grouped items
NAMES_PER_GROUP = 30  # names listed in a grouped item before "and N more"
CANDIDATES_SHOWN = 5  # review candidates listed under an action (master_status.json has them all)
# What blocks a workflow, worst first: the key, and the words of a group heading.
BLOCKERS = (
    ("unreadable", "a fix of the file"),
    ("no_source", "files no source has"),
    ("invalid", "a fix of invalid file names"),
    ("no_pack", "a node type no known pack provides"),
    ("access", "access to a gated file"),
    ("review", "your review"),
    ("choose", "a choice between packs"),
    ("retry", "a search retry"),
    ("search", "a search"),
    ("download", "downloads"),
    ("install", "a pack install"),
    ("enable", "a pack re-enabled"),
    ("drift", "a drifted file replaced"),
)
_MODEL_BLOCKER = {
    "FOUND": "download",
    "NEEDS_ACCESS": "access",
    "UNCERTAIN": "review",
    "NOT_FOUND": "no_source",
    "INVALID_FILENAME": "invalid",
    "ERROR": "retry",
    "NOT_SEARCHED": "search",
}
_ORDER = {key: index for index, (key, _) in enumerate(BLOCKERS)}


def manager_line(maps: Mapping[str, Any]) -> str:
    """Return the line naming the ComfyUI-Manager maps the cycle used (file, where from, Manager version)."""
    parts = []
    for key, label in (("node_map", "node map"), ("model_list", "model list")):
        used = maps[key]
        if used is None:
            parts.append(f"{label}: none found")
            continue
        version = f" {used['version']}" if used["version"] else ""
        parts.append(f"{label} {code(used['path'])} ({used['source']}{version})")
    return "ComfyUI-Manager: " + "; ".join(parts)


def verification_summary(checked: Mapping[str, Any]) -> str:
    """Return the line saying how much of the files with a declared sha256 is verified, and what drifted."""
    p = checked["progress"]
    variants = f"{checked['alternatives']} missing files have a variant on disk."
    if not p["files_declared"]:
        return f"Declared hashes: no installed file has one; {variants}"
    # Bytes counted, so known: none verified yet (or empty files) is "0 B", not humanize's "size unknown".
    verified = humanize.size(p["bytes_verified"]) if p["bytes_verified"] else "0 B"
    line = f"Declared hashes: {p['files_verified']} of {p['files_declared']} files verified ({verified})"
    if p["files_pending"]:
        line += f", {p['files_pending']} pending ({humanize.size(p['bytes_pending'])}, hashed in later cycles)"
    return line + f"; {checked['drift']} drifted; {variants}"


def verification_lines(action: Mapping[str, Any], pad: str) -> list[str]:
    """Return the sub-lines of an action for the installed variants of its file (a suggestion, not a match)."""
    lines = []
    for variant in action.get("variants_on_disk", [])[:3]:
        saves = f", saves {humanize.size(action['size'])}" if action["size"] else ""
        note = f"; {variant['loader_note']}" if variant["loader_note"] else ""
        lines += [
            "",
            f"{pad}- already on disk: pick {code(variant['installed_as'])} instead "
            f"({text(', '.join(variant['differs']) + saves + note)})",
        ]
    return lines


def render(report: Mapping[str, Any], rows: Sequence[Row] | None = None) -> str:
    """Return the Markdown page for the report document ``report`` (``rows``: see ``body``)."""
    return join_parts([header(report), body(report, rows), tail(report)])


def body(report: Mapping[str, Any], rows: Sequence[Any] | None = None) -> list[str]:
    """Return the part of the page made from the findings (actions, broken files, workflows): the bulk of it,
    the same in every cycle whose inputs did not change. ``rows`` are the workflows as the page lists them
    (``status_report.Row``), made from ``report["workflows"]`` when not given."""
    return [
        *actions_section(report),
        *broken_section(report.get("broken_models", [])),
        *workflows_section(rows if rows is not None else rows_of(report["workflows"])),
    ]


def tail(report: Mapping[str, Any]) -> list[str]:
    """Return the part of the page about this cycle (recent intake, the stages run)."""
    return [*intake_section(report["recent_intake"]), *cycle_section(report)]


def join_parts(parts: Sequence[Sequence[str]]) -> str:
    """Return the page of ``parts`` (lists of lines): the same text as all their lines joined by newlines."""
    return "\n".join("\n".join(part) for part in parts if part)


def header(report: Mapping[str, Any]) -> list[str]:
    """Return the title, the one-paragraph summary and the install line."""
    s = report["summary"]
    parts = [f"{number(s[r])} {LABELS[r]}" for r in ("ready", "resolvable", "needs_review", "blocked", "error") if s[r]]
    lines = [f"# ComfyUI readiness — {text(report['generated_at'])}", ""]
    lines.append(
        f"**{plural(s['workflows'], 'workflow')}: {', '.join(parts) or 'none found'}.** "
        f"{plural(s['missing_models'], 'model file')} and {plural(s['missing_nodes'], 'node type')} missing; "
        f"{plural(s['uncertain'], 'uncertain match', 'uncertain matches')} wait for review."
    )
    if s["download_sizes_known"]:
        lines.append(
            f"Proven downloads total {humanize.size(s['download_bytes'])} "
            f"({number(s['download_sizes_known'])} with a known size)."
        )
    if "verification" in report:
        lines.append(verification_summary(report["verification"]))
    install = code(report["comfyui_root"]) + (
        " (the demo install shipped with comfywatchman)" if report["demo"] else ""
    )
    offline = " · offline: nothing was searched online" if report["offline"] else ""
    lines += ["", f"Install: {install} · cycle {code(report['cycle_id'])}{offline}", ""]
    computed = report.get("computed")
    if computed and computed["cycle_id"] != report["cycle_id"]:
        lines += [
            f"Nothing the findings depend on changed since cycle {code(computed['cycle_id'])} "
            f"({text(computed['at'])}): they are as computed then, and master_status.json is that cycle's.",
            "",
        ]
    for limit in report.get("model_folder_limits", []):
        declared = (
            f" (declared in {code(limit['config'])}, section {code(limit['section'])})" if limit["config"] else ""
        )
        lines += [
            f"**Model folder {code(limit['path'])}** ({text(limit['folder'])}){declared}: {text(limit['reason'])}.",
            "",
        ]
    return [*lines[:2], *stale_banner(report), *lines[2:]]  # right under the title


def stale_banner(report: Mapping[str, Any]) -> list[str]:
    """Return the warning that opens a stale report (a workflows folder could not be read), or nothing."""
    stale = report.get("stale")
    if not stale:
        return []
    kept = (
        "No earlier report was there to keep: this one leaves out the workflows of that folder"
        if stale["cycle_id"] == report["cycle_id"]
        else "This is the last complete report, kept as it was"
    )
    return [
        f"> ⚠️ **Stale since {text(stale['since'])}** (last checked {text(stale['checked_at'])}, cycle "
        f"{code(stale['cycle_id'])}): {text(stale['reason'])}.",
        f"> {kept}; no workflow was marked removed, and the first cycle that can read every folder again "
        "brings it up to date.",
        "",
    ]


def broken_section(broken: Sequence[Mapping[str, Any]]) -> list[str]:
    """Return the installed model files that are cut short (delete, then download again), or nothing."""
    if not broken:
        return []
    lines = [f"## Broken model files ({number(len(broken))}: delete, then download again)", ""]
    shown = broken[:NAMES_PER_GROUP]
    lines += [f"- {code(b['folder'] + '/' + b['name'])}: {text(b['reason'])} ({code(b['path'])})" for b in shown]
    if len(broken) > len(shown):
        lines.append(f"- and {number(len(broken) - len(shown))} more (`broken_models` in master_status.json)")
    return [*lines, ""]


class Group:
    """Actions of one kind shown as one item: the tail past FULL_ITEMS_PER_KIND, or every search."""

    # A plain class (and Row a NamedTuple), not dataclasses: making a dataclass costs every cycle's process
    # ~0.2 ms (Python 3.11).
    __slots__ = ("actions", "key", "kind")

    kind: str
    key: tuple[str, ...]
    actions: list[Mapping[str, Any]]

    def __init__(self, kind: str, key: tuple[str, ...], actions: list[Mapping[str, Any]] | None = None) -> None:
        self.kind, self.key = kind, key
        self.actions = [] if actions is None else actions


def rank_items(ranked: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any] | Group]:
    """Return the list items in rank order: single actions, and groups placed where their best member ranks."""
    items: list[Mapping[str, Any] | Group] = []
    groups: dict[tuple[str, ...], Group] = {}
    shown: dict[str, int] = {}
    for action in ranked:
        kind = action["kind"]
        # A search or a retry joins its group wherever it ranks (``group_key``): most actions on a large install.
        key = (kind, action["detail"]) if kind in _WAITING else group_key(action, shown.get(kind, 0))
        if key is None:
            shown[kind] = shown.get(kind, 0) + 1
            items.append(action)
            continue
        group = groups.get(key)
        if group is None:
            group = groups[key] = Group(kind, key)
            items.append(group)
        group.actions.append(action)
    return items


_WAITING = frozenset(("search", "retry"))


def alone(ranked: Sequence[Mapping[str, Any]]) -> list[int]:
    """Return the places in ``ranked`` of the actions ``rank_items`` shows alone (``action_item`` reads all their
    fields), not in a group."""
    places: list[int] = []
    shown: dict[str, int] = {}
    for place, action in enumerate(ranked):
        kind = action["kind"]
        if kind not in _WAITING and group_key(action, shown.get(kind, 0)) is None:
            shown[kind] = shown.get(kind, 0) + 1
            places.append(place)
    return places


def group_key(action: Mapping[str, Any], shown: int) -> tuple[str, ...] | None:
    """Return the group an action joins, or None when it is shown on its own."""
    kind = action["kind"]
    if kind in ("search", "retry"):
        return (kind, action["detail"])
    if shown < FULL_ITEMS_PER_KIND or kind in ("install_pack", "enable_pack"):
        return None  # packs are few even on large installs, and each needs its own command
    steps = action.get("commands", [])
    if kind == "download" and steps:
        return ("download", *(commands.hf_batch_key(steps[0]["argv"]) or ("each",)))
    return (kind,)


def actions_section(report: Mapping[str, Any]) -> list[str]:
    """Return "Do this first": totals per kind, then every action ranked, with what to paste."""
    lines = ["## Do this first", ""]
    ranked = report["actions"]
    if not ranked:
        return [*lines, "Nothing to do: every workflow has what it needs.", ""]
    lines += totals_table(report["action_totals"])
    for index, item in enumerate(rank_items(ranked), start=1):
        marker = f"{index}. "
        if isinstance(item, Group):
            body = group_item(item, len(marker), report.get("search_now"), report["offline"])
        else:
            body = action_item(item, len(marker))
        lines.append(marker + body[0])
        lines += body[1:]
    lines.append("")
    return lines


def totals_table(totals: Mapping[str, Mapping[str, int]]) -> list[str]:
    """Return the table of totals per kind: actions, workflows concerned, known size."""
    lines = ["| step | items | needed by | size |", "|---|---:|---:|---|"]
    for kind, label in KIND_LABELS.items():
        entry = totals.get(kind)
        if entry is None:
            continue
        size = "—"
        if kind == "download":
            known = entry["sizes_known"]
            size = f"{humanize.size(entry['bytes'])} known" if known else "unknown"
            size += f" ({number(known)} of {number(entry['actions'])} sizes known)" if known < entry["actions"] else ""
        lines.append(f"| {label} | {number(entry['actions'])} | {plural(entry['workflows'], 'workflow')} | {size} |")
    return [*lines, ""]


def needed_by(action: Mapping[str, Any]) -> str:
    """Return "needed by N workflows", with the size and the token of a download; for a workflow that cannot
    be read, that it is the workflow itself (it is the one workflow its fix unblocks)."""
    if action["kind"] == "fix_workflow" and action.get("workflows") == [action["item"]]:
        return "the workflow itself cannot be read"
    words = f"needed by {plural(action['blocks'], 'workflow')}"
    if action["kind"] == "download":
        words += f", {humanize.size(action['size'])}"
    if action.get("token"):
        token = action["token"]
        words += f", needs {code(token['env'])}" + ("" if token["required"] else " (often)")
    return words


def _what(action: Mapping[str, Any]) -> str:
    """Return the words for what an action is about: the file (with its folder type) or the pack."""
    kind = action["kind"]
    if kind in ("install_pack", "enable_pack"):
        name = link(action["item"], action["url"])
        rid = f" (id {code(action['registry_id'])})" if action.get("registry_id") else ""
        types = action.get("node_types", [])
        provides = ", ".join(code(t) for t in types[:4]) + (
            f" and {number(len(types) - 4)} more" if len(types) > 4 else ""
        )
        return f"the pack **{name}**{rid}, for {provides}"
    folder = f" ({text(action['folder'])})" if action.get("folder") else ""
    return f"{code(action['item'])}{folder}"


VERBS = {
    "download": "Download",
    "get_access": "Get access to",
    "install_pack": "Install",
    "enable_pack": "Re-enable",
    "choose_pack": "Choose a pack for node",
    "find_pack": "Find a pack for node",
    "check_pack": "Check the installed pack for node",
    "review": "Review the candidates for",
    "find_manually": "Find by hand",
    "fix_workflow": "Fix",
    "replace_drift": "Replace the drifted file",
}


def action_item(action: Mapping[str, Any], width: int) -> list[str]:
    """Return one ranked action as a list item's lines: what and for how many, why, and what to paste."""
    pad = " " * width
    lines = [f"**{VERBS.get(action['kind'], action['kind'])}** {_what(action)} — {needed_by(action)}"]
    if action["detail"] and action["kind"] not in ("download", "install_pack", "enable_pack"):
        lines += ["", pad + text(action["detail"])]
    if action.get("note"):
        lines += ["", f"{pad}On disk: {text(action['note'])}."]
    for candidate in action.get("candidates", [])[:CANDIDATES_SHOWN]:
        lines += ["", f"{pad}- {candidate_line(candidate)}"]
    if action["kind"] == "download" and action.get("target_path") is None:
        lines += [
            "",
            f"{pad}From {link(action['url'] or '', action['url'])}: the folder type is unknown, so where it goes "
            "is yours to choose.",
        ]
    lines += verification_lines(action, pad)
    if action.get("drift"):
        lines += ["", pad + text(drift_detail(action["drift"]))]
    if action.get("commands"):
        lines += ["", *fence([step_line(s) for s in action["commands"]], width)]
    for way in action.get("alternatives", [])[:1]:
        lines += ["", f"{pad}Or: " + " then ".join(code(s["shell"]) for s in way)]
    return lines


def candidate_line(candidate: Mapping[str, Any]) -> str:
    """Return one review candidate: its name, who offered it, its link and why it is only a candidate."""
    line = f"{code(candidate['name'] or '')} from {text(candidate['source'] or '')}"
    if candidate.get("url"):
        line += f": {link(candidate['url'], candidate['url'])}"
    if candidate.get("reason"):
        line += f" — {text(candidate['reason'])}"
    return line


def step_line(step: Mapping[str, Any]) -> str:
    """Return a command step's shell line, with its note as a shell comment."""
    line: str = step["shell"]
    return line + (f"  # {step['note']}" if step["note"] and "\n" not in line else "")


def group_item(
    group: Group, width: int, search_now: Mapping[str, Any] | None = None, offline: bool = False
) -> list[str]:
    """Return a grouped item: a search that waits, or the tail of one kind (one command per Hub repository and
    folder for downloads)."""
    pad = " " * width
    members = group.actions
    total = len(set().union(*[a["workflows"] for a in members]))
    if group.kind in ("search", "retry"):
        return search_item(group, total, pad, search_now, offline)
    head = f"**{KIND_LABELS[group.kind]}**: {plural(len(members), 'more item')}, needed by {plural(total, 'workflow')}"
    if group.kind == "download":
        argv = members[0]["commands"][0]["argv"] if members[0].get("commands") else []
        if commands.hf_batch_key(argv) is not None:
            where = argv[argv.index("--local-dir") + 1]
            head = f"**Download** {plural(len(members), 'more file')} from {code(argv[2])} into {code(where)}"
            head += f", needed by {plural(total, 'workflow')}"
        return [head + download_size(members), "", *fence(download_lines(members), width)]
    return [head, "", pad + names_line(members), ""]


def download_size(members: Sequence[Mapping[str, Any]]) -> str:
    """Return ", SIZE (N of M sizes known)" for a group of downloads."""
    known = [a["size"] for a in members if a["size"]]
    if not known:
        return ", size unknown"
    suffix = "" if len(known) == len(members) else f" ({len(known)} of {len(members)} sizes known)"
    return f", {humanize.size(sum(known))}{suffix}"


def download_lines(members: Sequence[Mapping[str, Any]]) -> list[str]:
    """Return the commands of a download group: one ``hf download`` for all when they share repo and folder."""
    steps = [a["commands"][0] for a in members if a.get("commands")]
    if steps and commands.hf_batch_key(steps[0]["argv"]) is not None:
        merged = commands.merge_hf([s["argv"] for s in steps])
        return [commands.step("hf", merged)["shell"]]
    return [step_line(s) for s in steps]


def names_line(members: Sequence[Mapping[str, Any]]) -> str:
    """Return the members' names as code spans, the first NAMES_PER_GROUP, then how many more."""
    shown = ", ".join(code(a["item"]) for a in members[:NAMES_PER_GROUP])
    more = len(members) - NAMES_PER_GROUP
    return shown + (f" and {number(more)} more (all in master_status.json)" if more > 0 else "")


def due_words(due: str) -> str:
    """Return the words that say when the next cycle (which searches) is due."""
    return f", due about {text(due)}"


def search_item(group: Group, total: int, pad: str, search_now: Mapping[str, Any] | None, offline: bool) -> list[str]:
    """Return the item for files that wait for a search: why, when it will run, and how to run it now."""
    files = plural(len(group.actions), "file")
    due = (search_now or {}).get("next_cycle_at")
    if group.kind == "retry":
        head = f"**Search again**: {files} whose search failed, needed by {plural(total, 'workflow')}"
        why = f"{text(group.key[1] or 'no answer')}. A failed search is never cached: the next cycle asks again"
    else:
        head = f"**Wait for a search**: {files} not searched yet, needed by {plural(total, 'workflow')}"
        why = text(group.key[1] or "not searched")
        why += (
            ". This cycle ran offline (`--offline` or `[search] offline`): the next cycle that runs online"
            if (offline)
            else ". The next cycle"
        )
        why += " searches them"
    when = due_words(due) if due else ""
    lines = [head, "", f"{pad}Why: {why}{when}.", "", pad + names_line(group.actions)]
    if search_now and search_now["commands"]:
        lines += ["", f"{pad}To search now: " + code(search_now["commands"][0]["shell"])]
    return [*lines, ""]


def blockers(wf: Mapping[str, Any]) -> tuple[str, ...]:
    """Return what keeps a workflow from being ready, worst first (keys of BLOCKERS)."""
    found: set[str] = set()
    if wf["error"]:
        found.add("unreadable")
    for model in wf["missing_models"]:
        found.add(_MODEL_BLOCKER[model["status"]])
    for node in wf["missing_nodes"]:
        found.add(node_blocker(node))
    if wf.get("drift"):
        found.add("drift")
    return tuple(sorted(found, key=_ORDER.__getitem__))


# A node type's blocker by the kind of the action that provides it (its id is ``KIND:KEY``).
_NODE_BLOCKER = {"enable_pack": "enable", "install_pack": "install", "choose_pack": "choose"}


def node_blocker(node: Mapping[str, Any]) -> str:
    """Return the blocker key of a missing or disabled node type."""
    return _NODE_BLOCKER.get(node["action"].split(":", 1)[0], "no_pack")


class Row(NamedTuple):
    """A workflow as the page lists it: name, readiness, what blocks it, and whether it misses something new."""

    workflow: str
    readiness: str
    blockers: tuple[str, ...]
    newly_missing: bool
    error: str | None = None  # why the file cannot be read, naming it (the page says it beside the name)


def row(wf: Mapping[str, Any]) -> Row:
    """Return the page's row of one master_status.json workflow entry."""
    blocked = blockers(wf) if wf["readiness"] != "ready" else ()
    return Row(wf["workflow"], wf["readiness"], blocked, bool(wf["newly_missing"]), wf["error"])


def rows_of(workflows: Sequence[Mapping[str, Any]]) -> list[Row]:
    """Return the page's rows of master_status.json's workflow entries."""
    return [row(wf) for wf in workflows]


def workflows_section(rows: Sequence[Row]) -> list[str]:
    """Return the workflows that are not ready, grouped by what blocks them, then the ready ones in one list."""
    groups: dict[tuple[str, ...], list[Row]] = {}
    ready: list[str] = []
    for wf in rows:
        if wf.readiness == "ready":
            ready.append(wf.workflow)
        else:
            groups.setdefault(wf.blockers, []).append(wf)
    waiting = sum(len(members) for members in groups.values())
    lines = [f"## Not ready ({number(waiting)})", ""]
    if not groups:
        lines += ["Every workflow is ready.", ""]
    lines += newly_missing_lines(rows)
    words = dict(BLOCKERS)
    for key in sorted(groups, key=lambda k: ([_ORDER[b] for b in k], -len(groups[k]))):
        members = sorted(groups[key], key=lambda wf: wf.workflow)
        lines += [f"### Waiting for {', '.join(words[b] for b in key)} ({number(len(members))})", ""]
        lines += unreadable_lines(members) if "unreadable" in key else [", ".join(code(wf.workflow) for wf in members)]
        lines.append("")
    lines += [f"## Ready ({number(len(ready))})", ""]
    lines += [", ".join(code(n) for n in sorted(ready)) if ready else "None yet.", ""]
    return lines


def unreadable_lines(members: Sequence[Row]) -> list[str]:
    """Return the list of workflows that cannot be read, each with what is wrong (the first NAMES_PER_GROUP),
    then how many more: the name alone would leave the reader to guess which fix each file needs."""
    lines = [f"- {code(wf.workflow)}: {text(wf.error or 'cannot be read')}" for wf in members[:NAMES_PER_GROUP]]
    more = len(members) - NAMES_PER_GROUP
    return lines + ([f"- and {number(more)} more (all in master_status.json)"] if more > 0 else [])


def newly_missing_lines(rows: Sequence[Row]) -> list[str]:
    """Return the paragraph naming the workflows that miss something they did not miss last cycle, or nothing."""
    broke = sorted(wf.workflow for wf in rows if wf.newly_missing)
    if not broke:
        return []
    shown = ", ".join(code(name) for name in broke[:NAMES_PER_GROUP])
    more = f" and {number(len(broke) - NAMES_PER_GROUP)} more" if len(broke) > NAMES_PER_GROUP else ""
    return [f"Missing something new since the last cycle ({number(len(broke))}): {shown}{more}.", ""]


def intake_section(recent: Sequence[Mapping[str, Any]]) -> list[str]:
    """Return the workflows acknowledged lately, newest first."""
    lines = ["## Recently acknowledged workflows", ""]
    if not recent:
        lines.append("None yet.")
    for ack in recent:
        lines.append(f"- {text(ack['ts'])} {text(ack['kind'])} ({text(ack['source'])}): {code(ack['path'])}")
    return [*lines, ""]


def cycle_section(report: Mapping[str, Any]) -> list[str]:
    """Return this cycle's stages, errors, and the ComfyUI-Manager maps it used."""
    cycle = report["cycle"]
    lines = ["## This cycle", ""]
    for stage in cycle["stages"]:
        mark = "ok" if stage["ok"] else "FAILED"
        lines.append(f"- {stage['stage']}: {mark} in {stage['duration_s']:.2f} s — {text(stage['detail'])}")
    for error in cycle["errors"]:
        lines.append(f"- error: {text(error)}")
    for finding in cycle.get("findings", []):
        lines.append(f"- not read this cycle: {text(finding)}")
    if "manager_maps" in report:
        lines += ["", manager_line(report["manager_maps"])]
    return [*lines, ""]
