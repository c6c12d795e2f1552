"""FROM a model name that may live only in a registry: local store first, else pull it.

``RegistryModelSource`` wraps :class:`LocalModelSource`: a name found in the store resolves as
before; a missing one (or any one with ``refresh=True``, ``modelkit build --pull``) is pulled
from the name's host into the store, checked with :mod:`modelkit.registry.compat`, and then
inherited like a local model. With ``dry_run=True`` nothing is pulled: a name missing locally
is looked up with one manifest GET (no writes anywhere) and :class:`WouldPull` is raised for
the caller to print ("would pull NAME from HOST").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from modelkit.build.sources.base import FromRef, ResolvedBase
from modelkit.build.sources.local_model import LocalModelSource
from modelkit.errors import (
    BuildError,
    ModelNameError,
    ModelNotFoundError,
    RegistryError,
    StoreError,
)
from modelkit.names import ModelName
from modelkit.store import Manifest, Store

if TYPE_CHECKING:  # the registry stack (httpx, ...) is imported only when FROM needs it
    from modelkit.registry import ProgressFn

__all__ = ["PullOptions", "RegistryModelSource", "WouldPull"]


@dataclass(frozen=True)
class PullOptions:
    """How FROM may use a registry: ``refresh`` pulls even a model present locally."""

    insecure: bool = False
    refresh: bool = False
    dry_run: bool = False
    prune: bool = True
    progress: ProgressFn | None = None


class WouldPull(Exception):
    """Dry run only: FROM ``name`` is not in the store and would be pulled from ``host``."""

    def __init__(self, name: str, host: str, layers: int, size: int) -> None:
        super().__init__(f"would pull {name} from {host}")
        self.name = name
        self.host = host
        self.layers = layers
        self.size = size


class RegistryModelSource:
    name = "store-or-registry"

    def __init__(self, store: Store, options: PullOptions | None = None) -> None:
        self.store = store
        self.local = LocalModelSource(store)
        self.options = options or PullOptions()

    def claims(self, ref: FromRef) -> bool:
        return self.local.claims(ref)

    def resolve(self, ref: FromRef) -> ResolvedBase:
        try:
            name = ModelName.parse(ref.raw)
        except ModelNameError:
            return self.local.resolve(ref)  # words the path / name error
        present = self._present(name)
        if present and not (self.options.refresh and not self.options.dry_run):
            return self.local.resolve(ref)
        if self.options.dry_run:
            self._would_pull(ref, name)
        from modelkit.registry import pull
        from modelkit.registry.compat import check_pulled

        try:
            stored = pull(
                self.store,
                name,
                insecure=self.options.insecure,
                progress=self.options.progress,
                prune=self.options.prune,
            )
            check_pulled(self.store, stored)
        except (RegistryError, StoreError) as err:
            where = "refresh" if present else "not in the store; pull"
            raise BuildError(f"FROM {ref.raw}: {where} from {name.host} failed: {err}") from None
        return self.local.resolve(ref)

    def _present(self, name: ModelName) -> bool:
        try:
            self.store.read_manifest(self.store.resolve_name(name))
        except (ModelNotFoundError, StoreError):
            return False
        return True

    def _would_pull(self, ref: FromRef, name: ModelName) -> None:
        from modelkit.registry import RegistryClient, repository

        try:
            with RegistryClient.for_name(name, insecure=self.options.insecure) as client:
                raw, _ = client.get_manifest(repository(name), name.tag)
            manifest = Manifest.from_bytes(raw)
        except (RegistryError, StoreError) as err:
            raise BuildError(
                f"FROM {ref.raw}: not in the store and not pullable from {name.host}: {err}"
            ) from None
        size = sum(d.size for d in manifest.descriptors)
        raise WouldPull(name.display, name.host, len(manifest.layers), size)
