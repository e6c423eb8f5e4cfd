"""The qwen backend: an LLM agent asked where a file can be had, whose every claim is then checked.

Two transports, chosen by ``[qwen] transport``:

- ``cli``: the Qwen Code CLI, run as ``qwen PROMPT`` (the positional prompt; ``-p`` is deprecated) with a
  timeout, in a process group, an empty working folder and a home of its own (``agent_process``);
- ``openai``: any OpenAI-compatible chat-completions endpoint (DashScope compatible mode, Ollama, vLLM,
  llama.cpp server), offered tools that run this project's own Civitai and HuggingFace clients.
- ``auto`` (default): the CLI when the command is on PATH, else the endpoint when ``base_url`` is set, else
  the backend says NOT_SEARCHED ("not configured") so the next backend goes on.

The agent answers strict JSON (``schemas/qwen_answer.schema.json``). Nothing it says is FOUND until a
deterministic lookup (Civitai version/model, Hub tree) shows the exact file name or a matching hash. Doubt is
UNCERTAIN with every candidate and a reason; an agent that is unreachable, times out or answers garbage is
ERROR (retried next cycle), never NOT_FOUND.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
from collections.abc import Callable, Mapping
from typing import Any

from comfywatchman import artifacts
from comfywatchman.search import agent_process, names
from comfywatchman.search.base import (
    Candidate,
    Credential,
    Evidence,
    ModelQuery,
    SearchBackend,
    SearchContext,
    SearchResult,
    Status,
)
from comfywatchman.search.civitai import CivitaiClient, FileHit, civitai_client, decide, iter_files, version_files
from comfywatchman.search.http import HttpClient, RemoteError, host_of
from comfywatchman.search.huggingface import HubError, HuggingFaceBackend, HuggingFaceClient, hub_client

logger = logging.getLogger(__name__)

NOT_CONFIGURED = "qwen backend not configured (see [qwen] in config)"
MAX_TOOL_TEXT = 12000

PROMPT = """You find download sources for ComfyUI model files.
File: {name}
ComfyUI folder: {folder}
{extra}
Look on civitai.com and huggingface.co for a file with exactly this name (case does not matter). Civitai
renames non-LoRA files, so a Civitai file with another name is only a candidate. Prefer exact file names and
give ids: civitai_version_id (and civitai_model_id) for Civitai, hf_repo and hf_path for HuggingFace.
Answer with ONLY one JSON object, no prose and no code fence, matching this JSON Schema:
{schema}
Use status FOUND only for an exact file name match, UNCERTAIN for anything less, NOT_FOUND when nothing fits.
"""

TOOLS: list[dict[str, Any]] = [
    {
        "type": "function",
        "function": {
            "name": "civitai_search",
            "description": "Search Civitai models by name. Returns models, their versions and file names.",
            "parameters": {
                "type": "object",
                "additionalProperties": False,
                "required": ["query"],
                "properties": {
                    "query": {"type": "string", "description": "words from the model or file name"},
                },
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "civitai_model_version",
            "description": "Get one Civitai model version by id, with its files (name, sha256, size).",
            "parameters": {
                "type": "object",
                "additionalProperties": False,
                "required": ["version_id"],
                "properties": {"version_id": {"type": "integer", "description": "model version id"}},
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "hf_search",
            "description": "Search HuggingFace model repos by name (matches repo names, not file names).",
            "parameters": {
                "type": "object",
                "additionalProperties": False,
                "required": ["search"],
                "properties": {
                    "search": {"type": "string", "description": "words of the repo name"},
                    "author": {"type": "string", "description": "optional repo owner, e.g. Comfy-Org"},
                },
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "hf_list_files",
            "description": "List the model files in a HuggingFace repo (recursive).",
            "parameters": {
                "type": "object",
                "additionalProperties": False,
                "required": ["repo_id"],
                "properties": {
                    "repo_id": {"type": "string", "description": "owner/name"},
                },
            },
        },
    },
]


def credential_names() -> set[str]:
    """Return every environment variable any backend reads a credential from. They are never handed to the
    agent's process: it has no business with them, and an agent may echo its environment."""
    from comfywatchman.search.registry import all_backends

    return {name for cls in all_backends().values() for cred in cls.credentials for name in cred.env}


def extract_json(text: str) -> Any | None:
    """Return the JSON object in an agent's output: the whole text, or the last top-level object in it.

    Return None when no JSON object can be found. CLIs wrap answers in prose or code fences; taking the last
    object that parses is what a person reading the output would do.
    """
    text = text.strip()
    try:
        return json.loads(text)
    except ValueError:
        pass
    decoder = json.JSONDecoder()
    found = None
    index = text.find("{")
    while index != -1:
        try:
            value, end = decoder.raw_decode(text, index)
        except ValueError:
            index = text.find("{", index + 1)
            continue
        if isinstance(value, dict):
            found = value
        # Continue after this object: objects nested inside it are parts of it, not answers.
        index = text.find("{", end)
    return found


def answer_errors(answer: Any) -> list[str]:
    """Return every way ``answer`` violates ``schemas/qwen_answer.schema.json`` (empty when it is valid)."""
    return artifacts.schema_errors(answer, "qwen_answer", "qwen answer")


def _compact_model(model: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "model_id": model.get("id"),
        "name": model.get("name"),
        "type": model.get("type"),
        "mode": model.get("mode"),
        "versions": [
            {
                "version_id": v.get("id"),
                "name": v.get("name"),
                "files": [
                    {"name": f.get("name"), "sha256": (f.get("hashes") or {}).get("SHA256")}
                    for f in v.get("files") or []
                ],
            }
            for v in (model.get("modelVersions") or [])[:5]
        ],
    }


class QwenBackend(SearchBackend):
    """Asks an LLM agent (Qwen Code CLI or a chat endpoint); verifies its claims with exact lookups.

    ``env`` is the environment the CLI runs in (its PATH finds the command); it is not read for settings.
    """

    name = "qwen"
    config_section = "qwen"
    # The key goes to the chat endpoint's host and nowhere else, like every other token.
    credentials = (Credential(("QWEN_API_KEY", "DASHSCOPE_API_KEY"), "base_url"),)

    def __init__(
        self,
        context: SearchContext,
        civitai: CivitaiClient | None = None,
        hub: HuggingFaceClient | None = None,
        env: Mapping[str, str] | None = None,
        run: Callable[..., subprocess.CompletedProcess[str]] = agent_process.run_agent,
    ) -> None:
        super().__init__(context)
        # The child process inherits our environment (PATH, HOME, locale), minus every credential.
        self.env = dict(os.environ if env is None else env)
        self.http: HttpClient = context.http or HttpClient.from_config(context.config)
        self.civitai = civitai or civitai_client(SearchContext(context.config, context.now, self.http))
        self.hub = hub or hub_client(SearchContext(context.config, context.now, self.http))
        self._hub_backend = HuggingFaceBackend(context, client=self.hub)
        self._run = run

    # -- configuration ------------------------------------------------------------------------------------

    def transport(self) -> tuple[str | None, str]:
        """Return ``(transport, why)``: ``cli``, ``openai``, or None with the reason it cannot run."""
        wanted = str(self.settings["transport"])
        command = str(self.settings["command"] or "")
        import shutil  # here: the search loads this backend in every cycle that searches; shutil costs it

        has_cli = bool(command) and shutil.which(command, path=self.env.get("PATH")) is not None
        has_url = bool(self.settings["base_url"])
        if wanted == "cli":
            return ("cli", "") if has_cli else (None, f"qwen command {command!r} not found on PATH")
        if wanted == "openai":
            return ("openai", "") if has_url else (None, "[qwen] transport is openai but base_url is empty")
        if has_cli:
            return "cli", ""
        if has_url:
            return "openai", ""
        return None, NOT_CONFIGURED

    def lookup(self, query: ModelQuery) -> SearchResult:
        """Return the verified answer; NOT_SEARCHED when qwen is not configured; ERROR on any failure."""
        transport, why = self.transport()
        if transport is None:
            status = Status.NOT_SEARCHED if why == NOT_CONFIGURED else Status.ERROR
            return self.result(query, status, why)
        try:
            raw = self._ask_cli(query) if transport == "cli" else self._ask_chat(query)
        except RemoteError as exc:
            return self.result(query, Status.ERROR, f"qwen ({transport}): {exc}")
        answer = extract_json(raw)
        if answer is None:
            return self.result(
                query,
                Status.ERROR,
                f"qwen ({transport}) answered no JSON object: {self.http.scrub(raw.strip()[:200])!r}",
            )
        errors = answer_errors(answer)
        if errors:
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            return self.result(query, Status.ERROR, f"qwen ({transport}) answer breaks the schema: {errors[0]}{more}")
        try:
            result = self.verify(query, answer)
        except RemoteError as exc:
            return self.result(query, Status.ERROR, f"qwen: could not verify the agent's answer: {exc}")
        result.details.setdefault("qwen", {})["transport"] = transport
        return result

    # -- transports ---------------------------------------------------------------------------------------

    def prompt(self, query: ModelQuery) -> str:
        """Return the prompt for ``query``: file, folder, what the workflow declares, the answer schema."""
        extra = []
        if query.known_sha256:
            extra.append(f"Its sha256 is {query.known_sha256}.")
        extra += [f"The workflow says it comes from {d.url}." for d in query.declarations if d.url]
        schema = artifacts.validator("qwen_answer").schema
        return PROMPT.format(
            name=query.basename,
            folder=query.folder or "unknown",
            extra="\n".join(extra),
            schema=json.dumps(schema, separators=(",", ":")),
        )

    def _ask_cli(self, query: ModelQuery) -> str:
        command = [str(self.settings["command"]), *map(str, self.settings["extra_args"]), self.prompt(query)]
        secret_names = credential_names()
        env = {k: v for k, v in self.env.items() if k not in secret_names}
        # The agent's run counts against the cycle's network deadline like any request.
        timeout = min(float(self.settings["timeout_seconds"]), self.http.time_left())
        if timeout <= 0:
            raise self.http.refuse_past_deadline()
        try:
            done = self._run(command, env=env, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise RemoteError(f"the qwen CLI did not answer within {timeout:g} s", "timeout") from None
        except OSError as exc:
            raise RemoteError(f"the qwen CLI could not be started: {exc.strerror or exc}", "connection") from None
        if done.returncode != 0:
            tail = (done.stderr or done.stdout or "").strip()[-300:]
            raise RemoteError(f"the qwen CLI exited with status {done.returncode}: {self.http.scrub(tail)}", "http")
        return done.stdout or ""

    def _ask_chat(self, query: ModelQuery) -> str:
        url = str(self.settings["base_url"]).rstrip("/") + "/chat/completions"
        messages: list[dict[str, Any]] = [{"role": "user", "content": self.prompt(query)}]
        timeout = float(self.settings["timeout_seconds"])
        for _turn in range(int(self.settings["max_turns"])):
            body = {
                "model": self.settings["model"],
                "messages": messages,
                "tools": TOOLS,
                "tool_choice": "auto",
                "temperature": 0,
            }
            message = self._chat_turn(url, body, timeout)
            calls = message.get("tool_calls") or []
            if not calls:
                return str(message.get("content") or "")
            messages.append({"role": "assistant", "content": message.get("content"), "tool_calls": calls})
            for call in calls:
                messages.append(
                    {
                        "role": "tool",
                        "tool_call_id": call.get("id", ""),
                        "content": self.run_tool(call.get("function") or {}),
                    }
                )
        raise RemoteError(
            f"no final answer after {self.settings['max_turns']} turns of tool calls",
            "bad_json",
            host_of(url),
        )

    def _chat_turn(self, url: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Return the message of one chat completion; raise RemoteError for an error answer or no message."""
        response = self.http.request("POST", url, json=body, timeout=timeout, retry_read_timeout=False)
        payload = self.http.json_of(response, required=response.ok)
        if not response.ok:
            error = payload.get("error") if isinstance(payload, dict) else None
            text = error.get("message") if isinstance(error, dict) else error
            raise RemoteError(
                f"{host_of(url)} answered HTTP {response.status_code}"
                + (f": {self.http.scrub(str(text))}" if text else ""),
                "http",
                host_of(url),
                response.status_code,
            )
        try:
            message = payload["choices"][0]["message"]
        except (KeyError, IndexError, TypeError):
            message = None
        if not isinstance(message, dict):
            raise RemoteError(f"{host_of(url)} answered without choices[0].message", "bad_json", host_of(url))
        return message

    def run_tool(self, function: Mapping[str, Any]) -> str:
        """Run one tool call (``{name, arguments}``) with our own clients; return its JSON text for the agent.

        Failures go back to the agent as ``{"error": ...}`` rather than raised: it may try something else.
        """
        name = function.get("name")
        try:
            args = json.loads(function.get("arguments") or "{}")
            if not isinstance(args, dict):
                raise ValueError("arguments are not an object")
            tool = self._tools().get(str(name))
            out: Any = tool(args) if tool else {"error": f"unknown tool {name!r}"}
        except RemoteError as exc:
            out = {"error": str(exc)}
        except (KeyError, TypeError, ValueError) as exc:
            out = {"error": f"bad arguments for {name}: {exc}"}
        return json.dumps(out)[:MAX_TOOL_TEXT]

    def _tools(self) -> dict[str, Callable[[dict[str, Any]], Any]]:
        return {
            "civitai_search": self._tool_civitai_search,
            "civitai_model_version": self._tool_civitai_version,
            "hf_search": self._tool_hf_search,
            "hf_list_files": self._tool_hf_list_files,
        }

    def _tool_civitai_search(self, args: dict[str, Any]) -> Any:
        models = list(self.civitai.search_models(str(args["query"]), max_pages=1, limit=10))
        return [_compact_model(m) for m in models[:10]]

    def _tool_civitai_version(self, args: dict[str, Any]) -> Any:
        version = self.civitai.get_version(int(args["version_id"]))
        return version and {
            "version_id": version.get("id"),
            "model_id": version.get("modelId"),
            "files": [
                {"name": f.get("name"), "sha256": (f.get("hashes") or {}).get("SHA256")}
                for f in version.get("files") or []
            ],
        }

    def _tool_hf_search(self, args: dict[str, Any]) -> Any:
        return [m["id"] for m in self.hub.search_models(str(args["search"]), args.get("author"), limit=10)]

    def _tool_hf_list_files(self, args: dict[str, Any]) -> Any:
        files = self.hub.list_files(str(args["repo_id"])) or []
        return [f.path for f in files if f.path.lower().endswith(names.MODEL_EXTENSIONS)][:300]

    # -- verification -------------------------------------------------------------------------------------

    def verify(self, query: ModelQuery, answer: Mapping[str, Any]) -> SearchResult:
        """Given a schema-valid ``answer``, return FOUND only for a candidate a deterministic lookup proves.

        Unproven candidates come back UNCERTAIN, each with the reason; an answer with no candidates is
        NOT_FOUND only when the agent itself said NOT_FOUND. Raise RemoteError when no candidate could be
        proven because a lookup failed (the cycle retries).
        """
        claimed = answer["status"]
        candidates: list[Candidate] = []
        failures: list[str] = []
        locked: SearchResult | None = None
        for suggestion in answer["candidates"]:
            try:
                result = self._verify_one(query, suggestion)
            except RemoteError as exc:
                failures.append(str(exc))
                candidates.append(self._llm_candidate(suggestion, f"suggested by qwen; could not be checked: {exc}"))
                continue
            if result is not None and result.status is Status.FOUND:
                result.source = self.name
                result.details["qwen"] = {
                    "claimed": claimed,
                    "reason": answer["reason"],
                    "verified_by": suggestion["source"],
                }
                result.reason = f"{result.reason} (suggested by qwen, verified on {suggestion['source']})"
                return result
            if result is not None and result.status is Status.NEEDS_ACCESS:
                # Proven but locked: a later suggestion may still name a public copy.
                locked = locked or result
                continue
            if result is not None:
                candidates.extend(result.candidates)
            candidates.append(self._llm_candidate(suggestion, self._why_unproven(query, suggestion, claimed)))
        if locked is not None:
            locked.source = self.name
            locked.candidates += candidates
            locked.details["qwen"] = {"claimed": claimed, "reason": answer["reason"]}
            return locked
        if failures:
            raise RemoteError("; ".join(failures[:3]), "connection")
        if candidates:
            return self.result(
                query,
                Status.UNCERTAIN,
                f"qwen said {claimed}; no candidate could be proven",
                evidence=Evidence.LLM_SUGGESTION,
                candidates=candidates,
                details={"qwen": {"claimed": claimed, "reason": answer["reason"]}},
            )
        if claimed == "NOT_FOUND":
            return self.result(query, Status.NOT_FOUND, f"qwen found nothing: {answer['reason']}")
        raise RemoteError(f"qwen said {claimed} but named no candidate", "bad_json")

    def _why_unproven(self, query: ModelQuery, suggestion: Mapping[str, Any], claimed: str) -> str:
        if suggestion["source"] == "other":
            return "suggested by qwen on a site that cannot be verified"
        if not names.same_basename(str(suggestion["filename"]), query.name):
            return f"suggested by qwen ({claimed}); its file name differs and no hash proves identity"
        return f"suggested by qwen ({claimed}); the lookup did not confirm the file"

    def _llm_candidate(self, suggestion: Mapping[str, Any], reason: str) -> Candidate:
        details = {
            k: suggestion.get(k)
            for k in (
                "civitai_model_id",
                "civitai_version_id",
                "hf_repo",
                "hf_path",
                "hf_revision",
                "confidence",
            )
            if suggestion.get(k) is not None
        }
        details["agent_reason"] = suggestion["reason"]
        return Candidate(
            source=f"qwen/{suggestion['source']}",
            name=str(suggestion["filename"]),
            url=suggestion.get("url"),
            evidence=Evidence.LLM_SUGGESTION,
            reason=reason,
            details=details,
        )

    def _verify_one(self, query: ModelQuery, suggestion: Mapping[str, Any]) -> SearchResult | None:
        if suggestion["source"] == "civitai":
            return self._verify_civitai(query, suggestion)
        if suggestion["source"] == "huggingface":
            return self._verify_hub(query, suggestion)
        return None

    def _verify_civitai(self, query: ModelQuery, suggestion: Mapping[str, Any]) -> SearchResult | None:
        url = suggestion.get("url") or ""
        version_id = suggestion.get("civitai_version_id")
        model_id = suggestion.get("civitai_model_id")
        if url and not (version_id or model_id):
            hosts = (*self.context.config.section("civitai")["hosts"], self.civitai.host.split(":")[0])
            ref = names.parse_civitai_url(url, tuple(hosts))
            version_id, model_id = (ref.version_id, ref.model_id) if ref else (None, None)
        hits: list[FileHit] = []
        if version_id:
            version = self.civitai.get_version(int(version_id))
            hits = list(version_files(version)) if version else []
        if not hits and model_id:
            model = self.civitai.get_model(int(model_id))
            hits = list(iter_files(model)) if model else []
        return decide(query, hits, source=self.name, now=self.context.now) if hits else None

    def _verify_hub(self, query: ModelQuery, suggestion: Mapping[str, Any]) -> SearchResult | None:
        url = suggestion.get("url") or ""
        repo, path, revision = suggestion.get("hf_repo"), suggestion.get("hf_path"), suggestion.get("hf_revision")
        if url and not (repo and path):
            hosts = (*self.context.config.section("huggingface")["hosts"], self.hub.host)
            hf_ref = names.parse_hf_url(url, tuple(hosts))
            if hf_ref is not None:
                repo, path, revision = hf_ref.repo_id, hf_ref.path, hf_ref.revision
        if not repo:
            return None
        try:
            return self._hub_backend.check_file(query, str(repo), str(revision or "main"), path)
        except HubError as exc:
            if exc.gated:
                return None
            raise
