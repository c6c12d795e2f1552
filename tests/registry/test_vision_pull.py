"""A vision model through a real registry: its projector layer is pushed and pulled like any
layer, and the pulled model sees an image."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from fixtures.registry import RunningRegistry
from fixtures.tiny_projector import tiny_image_bytes
from modelkit.build import BuildCache, execute_build, plan_build
from modelkit.modelfile import parse
from modelkit.names import ModelName
from modelkit.registry import pull, push
from modelkit.runtime.engine import LoadedModel
from modelkit.runtime.options import load_params, resolve_options
from modelkit.store import MEDIA_TYPE_PROJECTOR, Store, view_model

PROMPT = "<|im_start|>user\n[img-0] what is this?<|im_end|>\n<|im_start|>assistant\n"


def test_a_pulled_vision_model_sees_images(
    registry: RunningRegistry,
    empty_store: Store,
    tmp_path: Path,
    tiny_gguf: Path,
    tiny_projector_gguf: Path,
) -> None:
    source = Store(tmp_path / "vision-models")
    cache = BuildCache.for_store(source.root)
    name = registry.name("test/seer:latest")
    modelfile = f"FROM {tiny_gguf}\nFROM {tiny_projector_gguf}\nPARAMETER num_ctx 256\n"
    execute_build(plan_build(parse(modelfile), source, cache), ModelName.parse(name), source, cache)
    push(source, name)
    pulled = pull(empty_store, name)
    assert [d.media_type for d in pulled.manifest.layers].count(MEDIA_TYPE_PROJECTOR) == 1
    view = view_model(empty_store, ModelName.parse(name))
    assert view.projectors and view.model is not None
    load = load_params(resolve_options(view.parameters, {"num_thread": 1}))
    model = LoadedModel.from_view(empty_store, view, dataclasses.replace(load, n_seq_max=1))
    with model:
        options = model.resolve({"temperature": 0, "num_predict": 3})
        chunks = list(model.generate(PROMPT, options, images=[tiny_image_bytes()]))
    stats = chunks[-1].stats
    assert stats is not None and stats.eval_count == 3
    assert model.vision is not None and model.vision.stats.encodes == 1
