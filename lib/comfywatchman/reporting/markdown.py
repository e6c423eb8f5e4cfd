"""Render ``master_status.json`` as ``master_status.md``: a page a person reads over coffee."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from comfywatchman import humanize
from comfywatchman.reporting.status_report import installed_notes

ICONS = {"ready": "✅", "resolvable": "⬇️", "needs_review": "🔎", "blocked": "⛔", "error": "💥"}
LABELS = {
    "ready": "ready",
    "resolvable": "resolvable",
    "needs_review": "needs review",
    "blocked": "blocked",
    "error": "unreadable",
}
ACTION_VERBS = {
    "download": "Download",
    "get_access": "Get access to",
    "install_pack": "Install pack for",
    "enable_pack": "Re-enable pack for",
    "choose_pack": "Choose a pack for",
    "check_pack": "Check the installed pack for",
    "review": "Review candidates for",
    "find_manually": "Find manually",
    "find_pack": "Find a pack for",
    "retry": "Retry search for",
    "search": "Search for",
    "fix_workflow": "Fix",
}


def manager_line(maps: Mapping[str, Any]) -> str:
    """Return the line naming the ComfyUI-Manager maps the cycle used (file, where from, Manager version)."""
    parts = []
    for key, label in (("node_map", "node map"), ("model_list", "model list")):
        used = maps[key]
        if used is None:
            parts.append(f"{label}: none found")
            continue
        version = f" {used['version']}" if used["version"] else ""
        parts.append(f"{label} `{used['path']}` ({used['source']}{version})")
    return "ComfyUI-Manager: " + "; ".join(parts)


def render(report: Mapping[str, Any]) -> str:
    """Return the Markdown page for the report document ``report``."""
    s = report["summary"]
    lines = [f"# ComfyUI readiness — {report['generated_at']}", ""]
    install = f"`{report['comfyui_root']}`" + (
        " (the demo install shipped with comfywatchman)" if report["demo"] else ""
    )
    stale = report.get("stale")
    if stale:
        lines += [
            f"> ⚠️ **Stale since {stale['since']}** (last checked {stale['checked_at']}, cycle "
            f"`{stale['cycle_id']}`): {stale['reason']}.",
            "> "
            + (
                "No earlier report was there to keep: this one leaves out the workflows of that folder"
                if stale["cycle_id"] == report["cycle_id"]
                else "This is the last complete report, kept as it was"
            )
            + "; no workflow was marked removed, and the first cycle that can read every folder again brings it "
            "up to date.",
            "",
        ]
    lines.append(f"Install: {install} · cycle `{report['cycle_id']}`" + (" · offline" if report["offline"] else ""))
    if "manager_maps" in report:
        lines.append(manager_line(report["manager_maps"]))
    lines.append("")
    parts = [f"{s[r]} {LABELS[r]}" for r in ("ready", "resolvable", "needs_review", "blocked", "error") if s[r]]
    lines.append(
        f"**{s['workflows']} workflows: {', '.join(parts) or 'none found'}.** "
        f"{s['missing_models']} model files and {s['missing_nodes']} node types missing; "
        f"{s['uncertain']} uncertain matches wait for review."
    )
    if s["download_sizes_known"]:
        total = humanize.size(s["download_bytes"])
        lines.append(f"Proven downloads total {total} ({s['download_sizes_known']} with a known size).")
    lines.append("")

    lines += ["## Do this first", ""]
    if not report["actions"]:
        lines += ["Nothing to do: every workflow has what it needs.", ""]
    for number, action in enumerate(report["actions"][:15], start=1):
        verb = ACTION_VERBS.get(action["kind"], action["kind"])
        where = f" into `{action['folder']}`" if action["kind"] == "download" and action["folder"] else ""
        blocks = f"{action['blocks']} workflow{'s' if action['blocks'] != 1 else ''}"
        line = f"{number}. {verb} `{action['item']}`{where} — needed by {blocks}"
        if action["kind"] == "download":
            line += f" ({humanize.size(action['size'])})"
        lines.append(line)
        if action["url"]:
            lines.append(f"   - {action['url']}")
        if action["detail"] and action["kind"] != "download":
            lines.append(f"   - {action['detail']}")
    if len(report["actions"]) > 15:
        lines.append(f"\n…and {len(report['actions']) - 15} more in master_status.json.")
    lines.append("")

    if report.get("broken_models"):
        lines += ["## Broken model files (delete, then download again)", ""]
        lines += [f"- `{b['folder']}/{b['name']}`: {b['reason']} ({b['path']})" for b in report["broken_models"]] + [""]
    lines += ["## Workflows", ""]
    order = {"error": 0, "blocked": 1, "needs_review": 2, "resolvable": 3, "ready": 4}
    for wf in sorted(report["workflows"], key=lambda w: (order[w["readiness"]], w["workflow"])):
        lines.append(f"### {ICONS[wf['readiness']]} {wf['workflow']} — {LABELS[wf['readiness']]}")
        lines.append(f"Source `{wf['intake_source']}` · last fully resolvable: {wf['last_resolved_at'] or 'never'}")
        if wf["error"]:
            lines.append(f"- cannot read: {wf['error']}")
        for model in wf["missing_models"]:
            where = f" ({model['folder']})" if model["folder"] else ""
            lines.append(
                f"- model `{model['name']}`{where}, {model['node'] or 'declared'}: **{model['status']}**"
                + (f" — {model['url']}" if model["url"] else (f" — {model['reason']}" if model["reason"] else ""))
            )
            if model["note"]:
                lines.append(f"  - {model['note']}")
            if model["looked_in"] and model["status"] != "FOUND":
                lines.append(
                    f"  - looked in: {', '.join(model['looked_in'][:3])}"
                    + (" …" if len(model["looked_in"]) > 3 else "")
                )
            for cand in model["candidates"][:3]:
                lines.append(
                    f"  - candidate `{cand['name']}` from {cand['source']}: {cand['reason']}"
                    + (f" — {cand['url']}" if cand["url"] else "")
                )
        for node in wf["missing_nodes"]:
            if node["state"] == "disabled":
                disabled = ", ".join(p["name"] for p in node["packs"])
                lines.append(f"- node `{node['class_type']}`: pack disabled — re-enable {disabled}")
                continue
            packs = [p for p in node["packs"] if not p.get("installed")]
            notes = installed_notes(node)
            if not packs and notes:
                lines.append(f"- node `{node['class_type']}`: missing — {notes}")
            elif not packs:
                lines.append(f"- node `{node['class_type']}`: missing, and no known pack provides it")
            elif len(packs) == 1:
                lines.append(f"- node `{node['class_type']}`: missing — `{packs[0].get('install', packs[0]['name'])}`")
            else:
                lines.append(
                    f"- node `{node['class_type']}`: missing — claimed by {len(packs)} packs: "
                    + ", ".join(p["name"] for p in packs[:5])
                    + (" …" if len(packs) > 5 else "")
                )
        if wf["inactive_missing"]:
            lines.append(f"- {wf['inactive_missing']} more missing on muted or bypassed nodes (not counted)")
        if wf["newly_missing"]:
            lines.append(f"- newly missing since the last cycle: {', '.join(wf['newly_missing'])}")
        lines.append("")

    lines += ["## Recently acknowledged workflows", ""]
    if not report["recent_intake"]:
        lines.append("None yet.")
    for ack in report["recent_intake"]:
        lines.append(f"- {ack['ts']} {ack['kind']} ({ack['source']}): `{ack['path']}`")
    lines.append("")

    cycle = report["cycle"]
    lines += ["## This cycle", ""]
    for stage in cycle["stages"]:
        mark = "ok" if stage["ok"] else "FAILED"
        lines.append(f"- {stage['stage']}: {mark} in {stage['duration_s']:.2f} s — {stage['detail']}")
    for error in cycle["errors"]:
        lines.append(f"- error: {error}")
    lines.append("")
    return "\n".join(lines)
