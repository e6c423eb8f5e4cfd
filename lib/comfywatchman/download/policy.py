"""What runs: pure functions of a task, its recorded state and the settings (no I/O), table-tested.

Nothing runs that is not FOUND with proof (only such results become tasks at all: ``search.policy.may_queue``).
Of those, a task runs when a person approved it, or, with auto-download on, when it is trusted: declared by the
workflow itself, or proven by a hash, and in both cases served from a trusted host. An exact file name alone is
never trusted: it waits for review.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from comfywatchman.search.declared import host_trusted

PROOF = ("declared", "hash", "exact_filename")


def trusted_reason(task: Mapping[str, Any], trusted_hosts: Iterable[str]) -> str | None:
    """Return why ``task`` may run without review under auto-download, or None when a person must decide."""
    if task.get("evidence") not in PROOF or not task.get("url"):
        return None
    if not host_trusted(task["url"], [h.lower() for h in trusted_hosts]):
        return None
    host = urlsplit(task["url"]).hostname
    if task["evidence"] == "declared":
        return f"declared by the workflow, served by {host}"
    if task["evidence"] == "hash" and task.get("sha256"):
        return f"hash match, served by {host}"
    return None


def hash_proven(task: Mapping[str, Any]) -> bool:
    """Return whether ``task`` carries a SHA256 that proves identity: found by hash, or declared with one.
    (A Civitai hash on an exact-name match only proves the bytes are Civitai's file, not the one wanted.)"""
    return task.get("evidence") in ("hash", "declared") and bool(task.get("sha256"))


# A NamedTuple, not a frozen dataclass: making a dataclass costs a process ~0.4 ms (Python 3.11), a NamedTuple a
# tenth of that.
class Decision(NamedTuple):
    """Whether a task runs now, why, and who approved it (``user``, ``policy`` or None)."""

    run: bool
    why: str
    by: str | None = None


def decide(
    task: Mapping[str, Any],
    record: Mapping[str, Any] | None,
    *,
    auto: bool,
    trusted_hosts: Iterable[str],
    target_exists: bool,
) -> Decision:
    """Return whether ``task`` runs in this download run.

    ``record`` is its entry of ``downloads.json`` (None when never seen); ``target_exists`` whether its file is
    in place. A done task whose file is gone runs again; a failed one waits for a new approval; a deferred
    one (429, a cut) runs again when it is approved. Only a person's approval is remembered: what the policy
    trusted is decided afresh each run, so turning auto-download off stops it.
    """
    if task.get("evidence") not in PROOF or not task.get("url"):
        return Decision(False, "not FOUND with proof: never downloaded")
    outcome = (record or {}).get("outcome") or {}
    if outcome.get("status") in ("done", "copied", "present") and target_exists:
        return Decision(False, "already in place")
    if outcome.get("status") == "failed":
        return Decision(False, f"failed: {outcome.get('reason', '')} (approve it again to retry)")
    if record and record.get("approved_at") and record.get("approved_by") == "user":
        return Decision(True, "approved by you", "user")
    if auto:
        reason = trusted_reason(task, trusted_hosts)
        if reason:
            return Decision(True, f"trusted: {reason}", "policy")
        return Decision(False, "waits for review: not trusted for auto-download (" + _why_not(task) + ")")
    return Decision(False, "waits for review (--approve ID)")


def _why_not(task: Mapping[str, Any]) -> str:
    if task.get("evidence") == "exact_filename":
        return "an exact file name is no proof of identity"
    if task.get("evidence") == "hash" and not task.get("sha256"):
        return "no hash to verify"
    return "host not in [search] trusted_hosts"
