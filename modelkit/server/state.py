"""What every route shares: the settings and the store (the runtime joins later)."""

from __future__ import annotations

from dataclasses import dataclass

from modelkit.config import Settings
from modelkit.store import Store


@dataclass
class ServerState:
    settings: Settings
    store: Store
