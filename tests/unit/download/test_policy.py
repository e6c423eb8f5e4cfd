"""The download policy, table-tested: nothing unproven runs; auto-download trusts declarations and hashes on
trusted hosts only; a person's approval is remembered, the policy's is not."""

from __future__ import annotations

from typing import Any

import pytest

from comfywatchman.download.policy import decide, hash_proven, trusted_reason

HOSTS = ["huggingface.co", "civitai.com"]
SHA = "a" * 64
HF = "https://huggingface.co/org/r/resolve/main/x.safetensors"
CIV = "https://civitai.com/api/download/models/1"
EVIL = "https://evil.example/x.safetensors"
USER = {"approved_at": "2026-11-30T10:00:00+00:00", "approved_by": "user", "outcome": None}
POLICY = {"approved_at": "2026-11-30T10:00:00+00:00", "approved_by": "policy", "outcome": None}


def task(evidence: str, url: str | None = HF, sha: str | None = SHA) -> dict[str, Any]:
    return {"evidence": evidence, "url": url, "sha256": sha}


def outcome(status: str) -> dict[str, Any]:
    return {**USER, "outcome": {"status": status, "reason": "HTTP 404"}}


@pytest.mark.parametrize(
    ("item", "record", "auto", "exists", "runs", "by"),
    [
        # manual review is the default: nothing runs without an approval
        (task("declared"), None, False, False, False, None),
        (task("hash"), None, False, False, False, None),
        (task("declared"), USER, False, False, True, "user"),
        (task("exact_filename"), USER, False, False, True, "user"),
        # auto-download: declarations and hash matches on trusted hosts only
        (task("declared"), None, True, False, True, "policy"),
        (task("declared", sha=None), None, True, False, True, "policy"),
        (task("hash", CIV), None, True, False, True, "policy"),
        (task("hash", CIV, sha=None), None, True, False, False, None),
        (task("exact_filename", CIV), None, True, False, False, None),
        (task("declared", EVIL), None, True, False, False, None),
        (task("hash", EVIL), None, True, False, False, None),
        (task("hash", "ftp://huggingface.co/x"), None, True, False, False, None),
        (task("hash", "https://huggingface.co.evil.example/x"), None, True, False, False, None),
        # never anything that is not FOUND with proof, approved or not
        (task("similar_name"), USER, True, False, False, None),
        (task("declared", url=None), USER, True, False, False, None),
        # outcomes
        (task("declared"), outcome("done"), True, True, False, None),
        (task("declared"), outcome("done"), False, False, True, "user"),  # file gone: again
        (task("declared"), outcome("present"), False, True, False, None),
        (task("declared"), outcome("failed"), True, False, False, None),  # final until approved again
        (task("declared"), outcome("deferred"), False, False, True, "user"),
        # the policy's approval is decided afresh: auto-download off stops it
        (task("declared"), POLICY, False, False, False, None),
        (task("declared"), POLICY, True, False, True, "policy"),
    ],
)
def test_decide(item: dict[str, Any], record: Any, auto: bool, exists: bool, runs: bool, by: str | None) -> None:
    decision = decide(item, record, auto=auto, trusted_hosts=HOSTS, target_exists=exists)
    assert (decision.run, decision.by) == (runs, by), decision.why


def test_trusted_reason_and_hash_proven() -> None:
    assert trusted_reason(task("declared"), HOSTS) == "declared by the workflow, served by huggingface.co"
    assert trusted_reason(task("hash", CIV), ["CIVITAI.COM"]) == "hash match, served by civitai.com"
    assert trusted_reason(task("exact_filename"), HOSTS) is None
    assert hash_proven(task("hash")) and hash_proven(task("declared"))
    assert not hash_proven(task("declared", sha=None)) and not hash_proven(task("exact_filename"))
