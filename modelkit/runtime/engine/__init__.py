"""The llama.cpp engine (llama-cpp-python's low-level API), in parts with one job each:

- :mod:`.weights` — the library, imported lazily, and a model's weights and vocabulary;
- :mod:`.slots` — the sequence slots of a context and their KV cache (prompt reuse, shifts);
- :mod:`.sampling` — one request's sampler chain, grammar and log-probability logits;
- :mod:`.generation` — one request's progress and the text its tokens make;
- :mod:`.batcher` — the thread that owns the context and decodes every request's steps in
  one batch;
- :mod:`.embeddings` — embedding vectors, in a context of their own;
- :mod:`.model` — :class:`LoadedModel`, which puts them together;
- :mod:`.results` — what comes out (:class:`Chunk`, :class:`GenerationStats`,
  :class:`Embeddings`), plain data that the server reads without llama.cpp.

A runner process (:mod:`modelkit.runtime.runner`) holds one :class:`LoadedModel`; the server
imports only :mod:`.results`.
"""

from modelkit.runtime.engine.model import LoadedModel
from modelkit.runtime.engine.results import Chunk, Embeddings, GenerationStats
from modelkit.runtime.engine.weights import built_with_openmp

__all__ = ["Chunk", "Embeddings", "GenerationStats", "LoadedModel", "built_with_openmp"]
