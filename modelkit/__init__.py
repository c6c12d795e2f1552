"""modelkit: build, test, ship and serve local LLMs from Ollama-compatible Modelfiles.

The package is layered: modelfile → build → store ↔ registry → runtime → server; cli on top.
"""

__version__ = "0.1.0"

OLLAMA_API_VERSION = "0.33.0"
"""The Ollama release whose API modelkit implements (../shared/OLLAMA-REFERENCE.md's
snapshot). ``/api/version`` reports it, because clients gate features on that number and
refuse servers below their minimum; ``MODELKIT_OLLAMA_VERSION`` overrides it."""
