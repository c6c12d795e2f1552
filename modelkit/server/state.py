"""What every route shares: the settings, the store and the inference service."""

from __future__ import annotations

from dataclasses import dataclass

from modelkit.config import Settings
from modelkit.runtime.service import InferenceService
from modelkit.store import Store


@dataclass
class ServerState:
    settings: Settings
    store: Store
    service: InferenceService

    @classmethod
    def create(cls, settings: Settings) -> ServerState:
        store = Store(settings.models)
        return cls(settings=settings, store=store, service=InferenceService(store, settings))
