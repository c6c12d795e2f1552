"""A stored model read back by layer kind: its weights, adapters, template, system prompt,
parameters, messages and licenses — what ``show``, the runtime and the server need."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from modelkit.errors import StoreError
from modelkit.names import ModelName
from modelkit.store.config import ModelConfig
from modelkit.store.manifest import (
    MEDIA_TYPE_ADAPTER,
    MEDIA_TYPE_DRAFT,
    MEDIA_TYPE_LICENSE,
    MEDIA_TYPE_MESSAGES,
    MEDIA_TYPE_MODEL,
    MEDIA_TYPE_PARAMS,
    MEDIA_TYPE_PROJECTOR,
    MEDIA_TYPE_PROMPT,
    MEDIA_TYPE_SYSTEM,
    MEDIA_TYPE_TEMPLATE,
    Descriptor,
)
from modelkit.store.store import Store, StoredManifest


@dataclass
class ModelView:
    stored: StoredManifest
    config: ModelConfig
    model: Descriptor | None = None
    adapters: list[Descriptor] = field(default_factory=list)
    projectors: list[Descriptor] = field(default_factory=list)
    drafts: list[Descriptor] = field(default_factory=list)
    template: str | None = None
    system: str | None = None
    licenses: list[str] = field(default_factory=list)
    parameters: dict[str, Any] = field(default_factory=dict)
    messages: list[dict[str, Any]] = field(default_factory=list)

    @property
    def name(self) -> ModelName:
        return self.stored.name

    @property
    def parent_model(self) -> str:
        """The model layer's ``from`` (Ollama's ``details.parent_model``)."""
        return (self.model.from_ or "") if self.model else ""


def _text(store: Store, desc: Descriptor) -> str:
    return store.blob_path(desc.digest).read_bytes().decode("utf-8", errors="replace")


def _json(store: Store, desc: Descriptor) -> Any:
    try:
        return json.loads(store.blob_path(desc.digest).read_bytes())
    except (OSError, ValueError) as err:
        raise StoreError(f"layer {desc.digest} ({desc.media_type}) is unreadable: {err}") from None


def view_model(store: Store, name: ModelName) -> ModelView:
    """Read a model's manifest, config and small layers (raises ModelNotFoundError)."""
    return view_stored(store, store.read_manifest(store.resolve_name(name)))


def view_stored(store: Store, stored: StoredManifest) -> ModelView:
    """Read the config and small layers of a manifest, written or not yet (a build checks
    a model before its tag exists)."""
    name = stored.name
    config_path = store.blob_path(stored.manifest.config.digest)
    try:
        config = ModelConfig.from_bytes(config_path.read_bytes())
    except OSError as err:
        raise StoreError(f"config blob of {name.display} is missing: {err}") from None
    view = ModelView(stored=stored, config=config)
    for desc in stored.manifest.layers:
        kind = desc.media_type
        if kind == MEDIA_TYPE_MODEL and view.model is None:
            view.model = desc
        elif kind == MEDIA_TYPE_ADAPTER:
            view.adapters.append(desc)
        elif kind == MEDIA_TYPE_PROJECTOR:
            view.projectors.append(desc)
        elif kind == MEDIA_TYPE_DRAFT:
            view.drafts.append(desc)
        elif kind in (MEDIA_TYPE_TEMPLATE, MEDIA_TYPE_PROMPT):
            view.template = _text(store, desc)
        elif kind == MEDIA_TYPE_SYSTEM:
            view.system = _text(store, desc)
        elif kind == MEDIA_TYPE_LICENSE:
            view.licenses.append(_text(store, desc))
        elif kind == MEDIA_TYPE_PARAMS:
            params = _json(store, desc)
            if isinstance(params, dict):
                view.parameters.update(params)
        elif kind == MEDIA_TYPE_MESSAGES:
            messages = _json(store, desc)
            if isinstance(messages, list):
                view.messages = [m for m in messages if isinstance(m, dict)]
        # Unknown media types are ignored, as Ollama's readers do.
    return view
