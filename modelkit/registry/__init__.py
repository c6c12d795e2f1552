"""Pull and push models over the OCI distribution (Docker Registry v2) protocol.

Public API (import from ``modelkit.registry``):

- :func:`pull` — ``pull(store, name, *, insecure=False, progress=None, prune=True,
  client=None, retry=Retry()) -> StoredManifest``; an interrupted part or blob is retried
  (:class:`Retry`: 6 tries, 1 s doubling), each try resuming where the last one stopped;
- :func:`push` — ``push(store, name, *, insecure=False, progress=None, chunk_size=…,
  client=None) -> dict[digest, "exists" | "mounted" | "uploaded"]``;
- :class:`RegistryClient` — the HTTP client (``RegistryClient.for_name(name, insecure=…,
  transport=…, event_hooks=…)``);
- auth helpers: :func:`docker_credentials`, :func:`parse_challenge`.

``progress`` receives Ollama ``/api/pull`` / ``/api/push`` objects (``{"status": …}``, plus
``digest``/``total``/``completed`` while a blob moves). Errors are
:class:`~modelkit.errors.RegistryError`.
"""

from modelkit.registry.auth import Challenge, docker_credentials, parse_challenge
from modelkit.registry.client import RegistryClient, base_url, repository
from modelkit.registry.pull import ProgressFn, Retry, partial_path, pull
from modelkit.registry.push import DEFAULT_CHUNK_SIZE, push

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "Challenge",
    "ProgressFn",
    "RegistryClient",
    "Retry",
    "base_url",
    "docker_credentials",
    "parse_challenge",
    "partial_path",
    "pull",
    "push",
    "repository",
]
