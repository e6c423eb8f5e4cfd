"""The decision policy, table-tested: what a set of backend answers amounts to, and what may be queued."""

from __future__ import annotations

import pytest

from comfywatchman.search import policy
from comfywatchman.search.base import Candidate, Evidence, SearchResult, Status


def _r(
    status: Status,
    source: str = "b",
    evidence: Evidence = Evidence.NONE,
    url: str | None = None,
    candidates: int = 0,
) -> SearchResult:
    cands = [
        Candidate(source, f"c{i}.safetensors", None, Evidence.SIMILAR_NAME, "near name") for i in range(candidates)
    ]
    return SearchResult(
        "m.safetensors",
        "loras",
        status,
        source,
        evidence,
        url=url,
        reason=f"{source} said {status.value}",
        candidates=cands,
    )


FOUND = _r(Status.FOUND, "civitai", Evidence.EXACT_FILENAME, "https://civitai.com/api/download/models/1")


@pytest.mark.parametrize(
    ("answers", "expected"),
    [
        ([], Status.NOT_SEARCHED),
        ([_r(Status.NOT_SEARCHED, "qwen")], Status.NOT_SEARCHED),
        ([_r(Status.NOT_FOUND, "civitai")], Status.NOT_FOUND),
        ([_r(Status.NOT_SEARCHED, "qwen"), _r(Status.NOT_FOUND, "civitai")], Status.NOT_FOUND),
        ([_r(Status.ERROR, "qwen"), _r(Status.NOT_FOUND, "civitai")], Status.ERROR),
        ([_r(Status.UNCERTAIN, "qwen", candidates=2), _r(Status.NOT_FOUND, "civitai")], Status.UNCERTAIN),
        ([_r(Status.UNCERTAIN, "qwen", candidates=1), _r(Status.ERROR, "civitai")], Status.UNCERTAIN),
        ([_r(Status.UNCERTAIN, "qwen", candidates=1), FOUND], Status.FOUND),
        ([_r(Status.ERROR, "qwen"), FOUND], Status.FOUND),
        # A FOUND without proof (an LLM's word) is not FOUND: it can only be a candidate.
        ([_r(Status.FOUND, "qwen", Evidence.LLM_SUGGESTION, "https://x", candidates=1)], Status.UNCERTAIN),
    ],
)
def test_combine_decides_from_all_answers(answers: list[SearchResult], expected: Status) -> None:
    result = policy.combine("m.safetensors", "loras", answers)
    assert result.status is expected
    assert [a["backend"] for a in result.attempts] == [a.source for a in answers]


def test_combine_keeps_every_candidate_when_uncertain() -> None:
    result = policy.combine(
        "m",
        "loras",
        [_r(Status.UNCERTAIN, "qwen", candidates=2), _r(Status.UNCERTAIN, "civitai", candidates=1)],
    )
    assert len(result.candidates) == 3 and "qwen" in result.reason and "civitai" in result.reason


@pytest.mark.parametrize(
    ("result", "auto", "queue", "review"),
    [
        (FOUND, False, True, True),
        (FOUND, True, True, True),  # exact name alone still waits for a person
        (_r(Status.FOUND, "declared", Evidence.DECLARED, "https://huggingface.co/x"), True, True, False),
        (_r(Status.FOUND, "civitai", Evidence.HASH, "https://civitai.com/x"), True, True, False),
        (_r(Status.FOUND, "civitai", Evidence.HASH, None), True, False, True),
        (_r(Status.UNCERTAIN, "qwen", candidates=1), True, False, True),
        (_r(Status.NOT_FOUND), False, False, True),
    ],
)
def test_may_queue_and_requires_review(result: SearchResult, auto: bool, queue: bool, review: bool) -> None:
    assert policy.may_queue(result) is queue
    assert policy.requires_review(result, auto_download=auto) is review


def test_combine_keeps_dead_end_candidates_without_turning_not_found_uncertain() -> None:
    result = policy.combine("m", "loras", [_r(Status.NOT_FOUND, "civitai", candidates=1)])
    assert result.status is Status.NOT_FOUND and len(result.candidates) == 1


def test_combine_does_not_repeat_the_backend_name_in_reasons() -> None:
    answer = SearchResult("m", "loras", Status.ERROR, "civitai", reason="civitai: cannot connect")
    assert policy.combine("m", "loras", [answer]).reason == "civitai: cannot connect"
