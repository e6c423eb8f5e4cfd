"""The queue as a person reviews it (``--queue``): what, where to, from where, size, evidence, state, and which
workflows each file unblocks; as text or as JSON."""

from __future__ import annotations

from typing import Any

from comfywatchman import humanize
from comfywatchman.download import paths, policy
from comfywatchman.download.tasks import Task


def status_of(task: Task, decision: policy.Decision) -> str:
    """Return the task's state in one word or two: pending_review, approved, will run, done, failed, deferred."""
    outcome = task.outcome or {}
    if outcome.get("status") in ("failed", "deferred", "done", "copied", "present") and not (
        decision.run and outcome.get("status") in ("done", "copied", "present")
    ):
        return str(outcome["status"])
    if decision.run:
        return "approved" if decision.by == "user" else "trusted"
    return "pending_review"


def as_json(planned: list[tuple[Task, policy.Decision, paths.Target | str]], trusted_hosts: list[str]) -> list[Any]:
    """Return the queue as JSON-ready objects: the queue's fields plus id, workflows, state and decisions."""
    out = []
    for task, decision, target in planned:
        out.append(
            {
                **task.item,
                "id": task.id,
                "state": status_of(task, decision),
                "target": str(target.path) if isinstance(target, paths.Target) else None,
                "target_problem": None if isinstance(target, paths.Target) else target,
                "workflows": list(task.workflows),
                "approved_at": (task.record or {}).get("approved_at"),
                "approved_by": (task.record or {}).get("approved_by"),
                "outcome": task.outcome,
                "decision": decision.why,
                "hash_proven": policy.hash_proven(task.item),
                "trusted_for_auto_download": policy.trusted_reason(task.item, trusted_hosts),
            }
        )
    return out


def as_text(planned: list[tuple[Task, policy.Decision, paths.Target | str]], trusted_hosts: list[str]) -> str:
    """Return the queue for people: one block per task, most-needed first."""
    if not planned:
        return "the download queue is empty: every missing file that could be proven is in place or none was found"
    ordered = sorted(planned, key=lambda p: (-p[0].item["blocks_workflows"], p[0].folder or "", p[0].name))
    lines = [f"{len(planned)} download task(s); approve with --approve ID (or --approve-proven), run with --download"]
    for task, decision, target in ordered:
        item = task.item
        where = target.path if isinstance(target, paths.Target) else f"(no safe place: {target})"
        trust = policy.trusted_reason(item, trusted_hosts)
        lines.append("")
        lines.append(f"{task.id}  {status_of(task, decision):<14}  {task.folder}/{task.name}")
        lines.append(f"    to:       {where}")
        lines.append(f"    from:     {item['url']}  ({item['source']})")
        lines.append(f"    size:     {humanize.size(item['size']) if item.get('size') else 'unknown'}")
        proof = f"{item['evidence']}" + (f", SHA256 {item['sha256']}" if item.get("sha256") else ", no published hash")
        lines.append(f"    evidence: {proof}" + (f"; trusted for --auto-download ({trust})" if trust else ""))
        names = ", ".join(task.workflows) if task.workflows else f"{item['blocks_workflows']} workflow(s)"
        lines.append(f"    unblocks: {names}")
        outcome = task.outcome
        if outcome and outcome.get("reason"):
            lines.append(f"    last run: {outcome['status']} at {outcome['at']}: {outcome['reason']}")
        elif outcome:
            lines.append(f"    last run: {outcome['status']} at {outcome['at']}")
        if not decision.run and not outcome:
            lines.append(f"    next:     {decision.why}")
    return "\n".join(lines)
