"""The Ollama HTTP API (and later its OpenAI-compatible /v1) served by FastAPI on uvicorn."""

from modelkit.server.app import create_app

__all__ = ["create_app"]
