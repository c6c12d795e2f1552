"""modelkit: build, test, ship and serve local LLMs from Ollama-compatible Modelfiles.

The package is layered: modelfile → build → store ↔ registry → runtime → server; cli on top.
"""

__version__ = "0.1.0"
