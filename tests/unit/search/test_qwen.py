"""The qwen backend: both transports against a fake CLI and a fake chat endpoint; every claim verified."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from comfywatchman.search import policy
from comfywatchman.search.base import Evidence, ModelQuery, Status
from comfywatchman.search.http import host_of
from comfywatchman.search.qwen import NOT_CONFIGURED, QwenBackend, extract_json
from tests.fakes import Reply, qwen_cli
from tests.fakes.chat_server import tool_call
from tests.unit.search.conftest import make_config, make_context

LORA = ModelQuery("add_detail.safetensors", "loras")


def answer(status="FOUND", candidates=(), reason="looked on civitai"):
    return {"status": status, "candidates": list(candidates), "reason": reason}


def civitai_candidate(filename="add_detail.safetensors", version=2001, **extra):
    return {
        "source": "civitai",
        "filename": filename,
        "civitai_version_id": version,
        "reason": "name matches",
        **extra,
    }


def cli_backend(tmp_path, civitai_server=None, hub_server=None, mode="answer", output=None, qwen=None, env=None):
    folder = qwen_cli.install(tmp_path / "bin", mode, output)
    config = make_config(
        tmp_path,
        civitai_server,
        hub_server,
        qwen={"transport": "cli", "command": "qwen", "timeout_seconds": 5.0, **(qwen or {})},
    )
    backend = QwenBackend(make_context(config), env={"PATH": qwen_cli.path_with(folder), **(env or {})})
    return backend, folder


def test_search_returns_not_searched_when_qwen_not_configured(tmp_path):
    backend = QwenBackend(make_context(make_config(tmp_path)), env={"PATH": str(tmp_path)})
    result = backend.search(LORA)
    assert result.status is Status.NOT_SEARCHED
    assert result.reason == NOT_CONFIGURED


def test_search_returns_error_when_cli_transport_chosen_but_missing(tmp_path):
    config = make_config(tmp_path, qwen={"transport": "cli", "command": "qwen"})
    result = QwenBackend(make_context(config), env={"PATH": str(tmp_path)}).search(LORA)
    assert result.status is Status.ERROR and "not found on PATH" in result.reason


def test_search_finds_when_cli_claim_is_verified_on_civitai(tmp_path, civitai_server):
    backend, folder = cli_backend(tmp_path, civitai_server, output=answer(candidates=[civitai_candidate()]))
    result = backend.search(LORA)
    assert result.status is Status.FOUND and result.source == "qwen"
    assert result.evidence is Evidence.EXACT_FILENAME
    assert result.details["qwen"]["verified_by"] == "civitai"
    assert result.details["civitai"]["file_id"] == 3001
    assert [r.path for r in civitai_server.requests] == ["/api/v1/model-versions/2001"]
    args = qwen_cli.calls(folder)[0]
    assert len(args) == 1 and "add_detail.safetensors" in args[0]  # the positional prompt; -p is deprecated


def test_search_is_uncertain_when_cli_claims_found_but_names_differ(tmp_path, civitai_server):
    claim = civitai_candidate("juggernautXL_v9.safetensors", 2002)
    backend, _ = cli_backend(tmp_path, civitai_server, output=answer(candidates=[claim]))
    result = backend.search(ModelQuery("juggernaut_xl_v9_rundiffusion.safetensors", "checkpoints"))
    assert result.status is Status.UNCERTAIN
    assert result.evidence is Evidence.LLM_SUGGESTION
    llm = [c for c in result.candidates if c.evidence is Evidence.LLM_SUGGESTION]
    assert llm and "no hash proves identity" in llm[0].reason


def test_search_is_uncertain_when_claimed_version_does_not_exist(tmp_path, civitai_server):
    backend, _ = cli_backend(tmp_path, civitai_server, output=answer(candidates=[civitai_candidate(version=99999)]))
    result = backend.search(LORA)
    assert result.status is Status.UNCERTAIN
    assert "did not confirm" in result.candidates[0].reason


def test_search_reads_json_inside_prose_when_cli_wraps_it(tmp_path, civitai_server):
    text = "Sure! Here is what I found:\n```json\n" + json.dumps(answer(candidates=[civitai_candidate()])) + "\n```\n"
    backend, _ = cli_backend(tmp_path, civitai_server, output=text)
    assert backend.search(LORA).status is Status.FOUND


def test_search_finds_when_cli_claim_is_verified_on_the_hub(tmp_path, hub_server):
    claim = {
        "source": "huggingface",
        "filename": "sdxl_vae.safetensors",
        "hf_repo": "someone/sdxl-vae",
        "hf_path": "sdxl_vae.safetensors",
        "reason": "official vae",
    }
    backend, _ = cli_backend(tmp_path, hub_server=hub_server, output=answer(candidates=[claim]))
    result = backend.search(ModelQuery("sdxl_vae.safetensors", "vae"))
    assert result.status is Status.FOUND
    assert result.details["huggingface"]["repo_id"] == "someone/sdxl-vae"
    assert result.details["qwen"]["verified_by"] == "huggingface"


def test_search_is_uncertain_when_candidate_is_on_an_unverifiable_site(tmp_path):
    claim = {
        "source": "other",
        "filename": "add_detail.safetensors",
        "url": "https://example.com/x",
        "reason": "r",
    }
    backend, _ = cli_backend(tmp_path, output=answer(candidates=[claim]))
    result = backend.search(LORA)
    assert result.status is Status.UNCERTAIN and "cannot be verified" in result.candidates[0].reason


@pytest.mark.parametrize(
    ("output", "expect"),
    [
        ("I could not find it, sorry.", "no JSON object"),
        (json.dumps({"status": "FOUND", "candidates": [], "reason": "x", "extra": 1}), "breaks the schema"),
        (json.dumps({"status": "MAYBE", "candidates": [], "reason": "x"}), "breaks the schema"),
        ('{"status": "FOUND", "candidates": [', "no JSON object"),
        (json.dumps(answer("FOUND", [])), "named no candidate"),
    ],
)
def test_search_returns_error_when_cli_answers_garbage(tmp_path, output, expect):
    backend, _ = cli_backend(tmp_path, output=output)
    result = backend.search(LORA)
    assert result.status is Status.ERROR and expect in result.reason


def test_search_returns_error_when_cli_hangs_past_timeout(tmp_path):
    backend, _ = cli_backend(tmp_path, mode="hang", qwen={"timeout_seconds": 0.5})
    result = backend.search(LORA)
    assert result.status is Status.ERROR and "did not answer within 0.5 s" in result.reason


def test_search_returns_error_when_cli_exits_nonzero(tmp_path):
    backend, _ = cli_backend(tmp_path, mode="fail")
    result = backend.search(LORA)
    assert result.status is Status.ERROR and "status 3" in result.reason and "not authenticated" in result.reason


def test_search_hides_secrets_from_cli_when_environment_has_them(tmp_path):
    env = {"CIVITAI_API_KEY": "civ-secret", "HF_TOKEN": "hf_secret", "HOME": str(tmp_path)}
    backend, _ = cli_backend(tmp_path, mode="env", env=env)
    result = backend.search(LORA)
    assert result.status is Status.NOT_FOUND
    assert result.reason == "qwen found nothing: env:"


def test_search_returns_not_found_when_agent_says_so_without_candidates(tmp_path):
    backend, _ = cli_backend(tmp_path, output=answer("NOT_FOUND", [], "nothing anywhere"))
    assert backend.search(LORA).status is Status.NOT_FOUND


def test_search_returns_error_when_verification_lookup_fails(tmp_path, civitai_server):
    civitai_server.fail("/api/v1/model-versions", 503, 503, 503)
    backend, _ = cli_backend(tmp_path, civitai_server, output=answer(candidates=[civitai_candidate()]))
    result = backend.search(LORA)
    assert result.status is Status.ERROR and "503" in result.reason


# -- the OpenAI-compatible transport ------------------------------------------------------------------------


def chat_backend(tmp_path, chat_server, civitai_server=None, hub_server=None, env=None, **qwen):
    config = make_config(
        tmp_path,
        civitai_server,
        hub_server,
        qwen={
            "transport": "openai",
            "base_url": chat_server.base_url,
            "model": "qwen-plus",
            "timeout_seconds": 0.5,
            **qwen,
        },
        secrets=env,  # QWEN_API_KEY is a credential the config loader reads, as from the environment
    )
    return QwenBackend(make_context(config), env={"PATH": str(tmp_path)})


def test_search_runs_tool_calls_then_verifies_when_chat_endpoint_answers(tmp_path, chat_server, civitai_server):
    chat_server.api_key = "sk-qwen-secret"
    chat_server.replies = [
        {"tool_calls": [tool_call("c1", "civitai_search", query="add detail")]},
        {"content": json.dumps(answer(candidates=[civitai_candidate()]))},
    ]
    backend = chat_backend(tmp_path, chat_server, civitai_server, env={"QWEN_API_KEY": "sk-qwen-secret"})
    result = backend.search(LORA)
    assert result.status is Status.FOUND and result.details["qwen"]["transport"] == "openai"
    second = chat_server.requests[1].json()
    tool_message = second["messages"][-1]
    assert tool_message["role"] == "tool" and tool_message["tool_call_id"] == "c1"
    assert "add_detail.safetensors" in tool_message["content"]
    assert chat_server.requests[0].json()["tools"][0]["function"]["name"] == "civitai_search"
    assert all("Authorization" not in r.headers for r in civitai_server.requests)
    assert host_of(chat_server.url) != host_of(civitai_server.url)


def test_run_tool_lists_hub_files_when_agent_asks(tmp_path, chat_server, hub_server):
    backend = chat_backend(tmp_path, chat_server, hub_server=hub_server)
    text = backend.run_tool({"name": "hf_list_files", "arguments": json.dumps({"repo_id": "someone/sdxl-vae"})})
    assert "sdxl_vae.safetensors" in json.loads(text)
    assert "error" in json.loads(backend.run_tool({"name": "rm_rf", "arguments": "{}"}))
    assert "bad arguments" in json.loads(backend.run_tool({"name": "hf_search", "arguments": "[1]"}))["error"]


@pytest.mark.parametrize(
    ("replies", "failures", "expect"),
    [
        ([{"content": "definitely the file is on civitai"}], (), "no JSON object"),
        ([], (500, 500, 500), "HTTP 500"),
        ([], (Reply(401, {"error": {"message": "Incorrect API key provided"}}),), "Incorrect API key"),
        ([], (("slow", 0.7),), "timed out"),
        ([{"content": json.dumps(answer("NOT_FOUND"))}], ("truncated",), "not valid JSON"),
        (
            [{"tool_calls": [tool_call(f"c{i}", "hf_search", search="x")]} for i in range(3)],
            (),
            "no final answer",
        ),
    ],
)
def test_search_returns_error_when_chat_endpoint_fails(tmp_path, chat_server, replies, failures, expect):
    chat_server.replies = list(replies)
    if failures:
        chat_server.fail("/v1/chat/completions", *failures)
    result = chat_backend(tmp_path, chat_server, max_turns=3).search(LORA)
    assert result.status is Status.ERROR
    assert expect in result.reason


def test_prompt_names_file_folder_and_schema_when_built(tmp_path):
    backend = QwenBackend(make_context(make_config(tmp_path)), env={})
    prompt = backend.prompt(ModelQuery("SDXL\\add_detail.safetensors", "loras"))
    assert "File: add_detail.safetensors" in prompt and "ComfyUI folder: loras" in prompt
    assert '"additionalProperties":false' in prompt


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"a": 1}', {"a": 1}),
        ('noise {"a": 1} more {"b": 2} end', {"b": 2}),
        ("none here", None),
        ('```json\n{"a": [1, {"c": 2}]}\n```', {"a": [1, {"c": 2}]}),
    ],
)
def test_extract_json_finds_last_object_when_text_wraps_it(text, expected):
    assert extract_json(text) == expected


def test_search_gives_up_at_first_timeout_when_chat_endpoint_is_slow(tmp_path, chat_server):
    chat_server.fail("/v1/chat/completions", ("slow", 0.7))
    result = chat_backend(tmp_path, chat_server).search(LORA)
    assert result.status is Status.ERROR and "timed out" in result.reason
    assert chat_server.count == 1  # an LLM that took too long once is not asked three times


# -- issue 11: what the agent reaches through its tools is held to the same rules ----------------------------


def test_search_never_finds_lora_for_checkpoint_loader_when_agent_reaches_it_by_tool(
    tmp_path, chat_server, civitai_server
):
    chat_server.replies = [
        {"tool_calls": [tool_call("c1", "civitai_search", query="crisp style")]},
        {"content": json.dumps(answer(candidates=[civitai_candidate("crisp_style.safetensors", 2009)]))},
    ]
    result = chat_backend(tmp_path, chat_server, civitai_server).search(
        ModelQuery("crisp_style.safetensors", "checkpoints")
    )
    assert result.status is Status.UNCERTAIN
    assert any("LORA" in c.reason and "checkpoints" in c.reason for c in result.candidates)
    assert not policy.may_queue(result)


def test_search_needs_access_when_agent_names_early_access_version(tmp_path, civitai_server):
    output = answer(candidates=[civitai_candidate("fresh_style.safetensors", 2010)])
    backend, _ = cli_backend(tmp_path, civitai_server, output=output)
    result = backend.search(ModelQuery("fresh_style.safetensors", "loras"))
    assert result.status is Status.NEEDS_ACCESS and result.source == "qwen"
    assert result.details["access"]["token"] == "CIVITAI_API_KEY"
    assert not policy.may_queue(result)


def test_search_needs_access_when_agent_names_file_in_gated_repo(tmp_path, hub_server):
    suggestion = {
        "source": "huggingface",
        "filename": "flux1-dev.safetensors",
        "hf_repo": "black-forest-labs/FLUX.1-dev",
        "hf_path": "flux1-dev.safetensors",
        "reason": "official repo",
    }
    backend, _ = cli_backend(tmp_path, hub_server=hub_server, output=answer(candidates=[suggestion]))
    result = backend.search(ModelQuery("flux1-dev.safetensors", "diffusion_models"))
    assert result.status is Status.NEEDS_ACCESS
    assert result.details["access"]["page"] == "https://huggingface.co/black-forest-labs/FLUX.1-dev"


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads process states from /proc")
def test_timeout_ends_the_whole_cli_group_so_no_worker_calls_the_endpoint_later(tmp_path, chat_server):
    backend, folder = cli_backend(tmp_path, mode="hang", qwen={"timeout_seconds": 1.0})
    (folder / "endpoint.txt").write_text(f"{chat_server.url}/v1/models", encoding="utf-8")
    (tmp_path / "private.txt").write_text("the user's own file", encoding="utf-8")
    result = backend.search(LORA)
    assert result.status is Status.ERROR and "did not answer within 1 s" in result.reason
    assert chat_server.count > 0  # the worker did call while the CLI ran
    [worker] = qwen_cli.workers(folder)
    assert not _running(worker)
    calls_at_end = chat_server.count
    time.sleep(0.5)
    assert chat_server.count == calls_at_end  # nobody of the group calls the endpoint any more


def test_cli_runs_in_an_empty_folder_with_a_home_of_its_own(tmp_path, civitai_server, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "private.txt").write_text("the user's own file", encoding="utf-8")
    user_home = tmp_path / "user-home"
    (user_home / ".qwen").mkdir(parents=True)
    backend, folder = cli_backend(
        tmp_path, civitai_server, output=answer(candidates=[civitai_candidate()]), env={"HOME": str(user_home)}
    )
    assert backend.search(LORA).status is Status.FOUND
    [seen] = qwen_cli.seen(folder)
    assert seen["files"] == [] and seen["cwd"] != str(tmp_path)
    home = Path(str(seen["home"]))
    assert home != user_home and not home.exists()  # its temporary home is gone afterwards
    # A worker left behind after a normal answer ends too (it may be ended before it wrote its pid).
    assert not any(_running(pid) for pid in qwen_cli.workers(folder))
