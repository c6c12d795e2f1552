"""Answer one prompt with a model from the store, straight through llama-cpp-python.

    python examples/ask.py MODEL "PROMPT"

It reads the model as ``modelkit build`` stored it (weights blob, SYSTEM, PARAMETERs) and
uses the GGUF's own chat template. ``modelkit run``/``serve`` replace it once the runtime lands.
"""

from __future__ import annotations

import os
import sys

from modelkit.config import Settings
from modelkit.names import ModelName
from modelkit.store import Store, view_model


def main(model: str, prompt: str) -> int:
    from llama_cpp import Llama

    store = Store(Settings.from_env().models)
    view = view_model(store, ModelName.parse(model))
    if view.model is None:
        print(f"{model} has no model layer", file=sys.stderr)
        return 1
    params = view.parameters
    llm = Llama(
        model_path=str(store.blob_path(view.model.digest)),
        n_ctx=int(params.get("num_ctx", 4096)),
        n_threads=os.cpu_count() or 2,
        seed=int(params.get("seed", 0)) if int(params.get("seed", -1)) >= 0 else 0,
        verbose=False,
    )
    messages = []
    if view.system:
        messages.append({"role": "system", "content": view.system})
    messages += [{"role": m["role"], "content": m["content"]} for m in view.messages]
    messages.append({"role": "user", "content": prompt})
    stops = params.get("stop", [])
    reply = llm.create_chat_completion(
        messages=messages,
        temperature=float(params.get("temperature", 0.8)),
        top_p=float(params.get("top_p", 0.9)),
        top_k=int(params.get("top_k", 40)),
        stop=list(stops) if isinstance(stops, list) else [stops],
        max_tokens=int(params.get("num_predict", 128))
        if params.get("num_predict", -1) > 0
        else 128,
    )
    print(reply["choices"][0]["message"]["content"].strip())  # type: ignore[index]
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))
