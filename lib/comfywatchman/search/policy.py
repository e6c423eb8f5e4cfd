"""The decision policy: pure functions, apart from all I/O, deciding what a set of answers amounts to and
what may be queued for download without a person looking first."""

from __future__ import annotations

from comfywatchman.search.base import PROOF, Candidate, Evidence, SearchResult, Status


def combine(name: str, folder: str | None, results: list[SearchResult]) -> SearchResult:
    """Return the one result that stands for every backend's answer about a file.

    The first FOUND with proof wins. Otherwise the first NEEDS_ACCESS (the file exists, proven, but must be
    unlocked first), with every other answer's candidates. Otherwise UNCERTAIN with every candidate when any backend was
    uncertain, or claimed FOUND without proof (doubt is never turned into NOT_FOUND). Otherwise ERROR when
    any backend failed (so the next cycle asks again), else NOT_FOUND when at least one backend looked,
    else NOT_SEARCHED. Candidates that came with a NOT_FOUND (dead ends such as archived models) are kept
    for the reader but do not make the result uncertain. Each backend's answer is kept in ``attempts``.
    """
    attempts = [{"backend": r.source, "status": r.status.value, "reason": r.reason} for r in results]
    for result in results:
        if result.status is Status.FOUND and result.evidence in PROOF:
            result.attempts = attempts
            return result
    candidates = [c for r in results for c in r.candidates]
    locked = next((r for r in results if r.status is Status.NEEDS_ACCESS), None)
    if locked is not None:
        locked.candidates = candidates
        locked.attempts = attempts
        return locked
    return _without_proof(name, folder, results, candidates, attempts)


def _without_proof(
    name: str,
    folder: str | None,
    results: list[SearchResult],
    candidates: list[Candidate],
    attempts: list[dict[str, str]],
) -> SearchResult:
    """Return what ``results`` with no proven FOUND and no NEEDS_ACCESS amount to: UNCERTAIN, else ERROR, else
    NOT_FOUND, else NOT_SEARCHED (see combine), carrying every candidate and ``attempts``."""
    uncertain = [r for r in results if r.status in (Status.UNCERTAIN, Status.FOUND)]
    if uncertain:
        reasons = "; ".join(_said(r) for r in uncertain if r.reason)
        return SearchResult(
            name, folder, Status.UNCERTAIN, uncertain[0].source, Evidence.NONE,
            reason=reasons, candidates=candidates, attempts=attempts,
        )  # fmt: skip
    for status in (Status.ERROR, Status.NOT_FOUND):
        matching = [r for r in results if r.status is status]
        if matching:
            reason = "; ".join(_said(r) for r in matching)
            return SearchResult(name, folder, status, "search", reason=reason, candidates=candidates, attempts=attempts)
    reasons = "; ".join(_said(r) for r in results if r.reason) or "no backend was asked"
    return SearchResult(name, folder, Status.NOT_SEARCHED, "search", reason=reasons, attempts=attempts)


BUDGET_SPENT = "request budget of this cycle spent"
DEADLINE_REACHED = "network deadline reached"


def not_searched_yet(
    name: str, folder: str | None, why: str, attempts: list[dict[str, str]] | None = None
) -> SearchResult:
    """Return NOT_SEARCHED for a file the cycle ran out of room for (``why``: its request budget, its
    deadline): not an error, never cached, and searched in a later cycle, which the reason says."""
    return SearchResult(
        name, folder, Status.NOT_SEARCHED, "search", reason=f"not searched yet ({why}); next cycle",
        details={"not_searched_yet": why}, attempts=list(attempts or []),
    )  # fmt: skip


def _said(result: SearchResult) -> str:
    """Return ``source: reason`` for one answer, without repeating a source the reason already names."""
    if result.reason.startswith(f"{result.source}:"):
        return result.reason
    return f"{result.source}: {result.reason}"


def may_queue(result: SearchResult) -> bool:
    """Return whether ``result`` may become a download task at all: FOUND, with proof and a URL."""
    return result.status is Status.FOUND and result.evidence in PROOF and bool(result.url)


def requires_review(result: SearchResult, auto_download: bool = False) -> bool:
    """Return whether a person must approve the download of ``result`` before it happens.

    Manual review is the default. With ``auto_download`` only the strongest proofs (a declaration by the
    workflow or a hash match) go through without review; an exact file name alone still waits.
    """
    if not may_queue(result):
        return True
    if not auto_download:
        return True
    return result.evidence not in (Evidence.DECLARED, Evidence.HASH)
