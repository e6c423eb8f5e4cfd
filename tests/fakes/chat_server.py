"""A fake OpenAI-compatible chat-completions endpoint (DashScope, Ollama, vLLM...) on 127.0.0.1.

It plays a script: each ``POST /v1/chat/completions`` takes the next entry of ``replies``: a message dict
(``{"content": ...}`` or ``{"tool_calls": [...]}``) wrapped in the standard response, or a scripted failure
(see ``FakeServer.fail``). Every request body is kept so tests can check the tool results fed back.
"""

from __future__ import annotations

import json
from typing import Any

from tests.fakes import FakeServer, Recorded, Reply


def tool_call(call_id: str, name: str, **arguments: Any) -> dict[str, Any]:
    """Return one tool call as an assistant message lists it (arguments JSON-encoded, as the API does)."""
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}


class FakeChat(FakeServer):
    """The fake endpoint; ``replies`` is consumed in order; ``api_key`` (if set) must come as Bearer."""

    def __init__(self, replies: list[dict[str, Any]] | None = None, api_key: str | None = None) -> None:
        super().__init__()
        self.replies = list(replies or [])
        self.api_key = api_key

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def route(self, request: Recorded) -> Reply:
        if request.method != "POST" or request.path != "/v1/chat/completions":
            return Reply(404, {"error": {"message": "Not found", "type": "invalid_request_error"}})
        if self.api_key and request.headers.get("Authorization") != f"Bearer {self.api_key}":
            return Reply(401, {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}})
        if not self.replies:
            return Reply(500, {"error": {"message": "script exhausted", "type": "server_error"}})
        message = {"role": "assistant", "content": None, **self.replies.pop(0)}
        finish = "tool_calls" if message.get("tool_calls") else "stop"
        return Reply(
            200,
            {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 0,
                "model": "fake",
                "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            },
        )
