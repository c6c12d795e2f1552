"""A small httpx client for the Ollama API at ``OLLAMA_HOST``, used by ``run``/``ps``/``stop``."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import httpx

from modelkit.errors import ModelkitError


class ClientError(ModelkitError):
    """The server answered with an error (``status`` is its HTTP status, 0 if unreachable)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def _error_text(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text.strip() or f"HTTP {response.status_code}"
    if isinstance(body, dict) and "error" in body:
        return str(body["error"])
    return response.text


def api_key_headers() -> dict[str, str]:
    """``Authorization: Bearer $MODELKIT_API_KEY`` for a server that wants API keys."""
    key = os.environ.get("MODELKIT_API_KEY", "").strip()
    return {"Authorization": f"Bearer {key}"} if key else {}


class APIClient:
    def __init__(self, base_url: str, timeout: float | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(base_url=self.base_url, timeout=timeout, headers=api_key_headers())

    def _unreachable(self) -> ClientError:
        return ClientError(
            f"could not connect to a server at {self.base_url}; run 'modelkit serve' to start it"
        )

    def heartbeat(self) -> None:
        try:
            self.http.head("/")
        except httpx.TransportError:
            raise self._unreachable() from None

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            response = self.http.request(method, path, json=body)
        except httpx.TransportError:
            raise self._unreachable() from None
        if response.status_code >= 400:
            raise ClientError(_error_text(response), response.status_code)
        return response.json() if response.content else None

    def stream(self, path: str, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """NDJSON objects of a streaming endpoint; a line carrying ``error`` raises."""
        try:
            with self.http.stream("POST", path, json=body) as response:
                if response.status_code >= 400:
                    response.read()
                    raise ClientError(_error_text(response), response.status_code)
                for line in response.iter_lines():
                    if not line.strip():
                        continue
                    obj = json.loads(line)
                    if isinstance(obj, dict) and "error" in obj:
                        raise ClientError(str(obj["error"]), response.status_code)
                    yield obj
        except httpx.TransportError:
            raise self._unreachable() from None
