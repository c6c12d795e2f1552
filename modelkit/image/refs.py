"""Container image references (``[host/]repo[:tag][@digest]``) and registry connections.
Owns Docker's naming defaults and the choice of HTTP or HTTPS for a registry host.

Docker's rule decides the host: the first component is a registry host when it has a ``.``
or a ``:`` or is ``localhost``; otherwise the image is on Docker Hub (``docker.io``, where a
one-component repository gets ``library/``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from modelkit.errors import ImageError
from modelkit.registry.client import RegistryClient, is_loopback_host

__all__ = ["DOCKER_HUB", "ImageRef", "registry_client"]

DOCKER_HUB = "docker.io"
_DOCKER_HUB_API = "registry-1.docker.io"
_COMPONENT_RE = re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*")
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
_HOST_RE = re.compile(r"[A-Za-z0-9.-]+(?::[0-9]+)?|\[[0-9A-Fa-f:.]+\](?::[0-9]+)?")


@dataclass(frozen=True)
class ImageRef:
    """A parsed, validated image reference."""

    host: str
    repository: str
    tag: str = "latest"
    digest: str | None = None

    @classmethod
    def parse(cls, text: str) -> ImageRef:
        """Parse ``[host/]repo[:tag][@sha256:…]``; :class:`ImageError` when invalid."""

        def fail(reason: str) -> ImageError:
            return ImageError(f"invalid image reference {text!r}: {reason}")

        rest = text.strip()
        if not rest:
            raise fail("it is empty")
        digest = None
        if "@" in rest:
            rest, digest = rest.split("@", 1)
            if _DIGEST_RE.fullmatch(digest) is None:
                raise fail("the digest must be sha256:<64 lowercase hex>")
        tag = "latest"
        slash, colon = rest.rfind("/"), rest.rfind(":")
        if colon > slash:
            rest, tag = rest[:colon], rest[colon + 1 :]
            if _TAG_RE.fullmatch(tag) is None:
                raise fail(f"bad tag {tag!r}")
        first, sep, remainder = rest.partition("/")
        if sep and ("." in first or ":" in first or first == "localhost"):
            if _HOST_RE.fullmatch(first) is None:
                raise fail(f"bad registry host {first!r}")
            host, repo = first, remainder
        else:
            host, repo = DOCKER_HUB, rest
            if "/" not in repo:
                repo = f"library/{repo}"
        components = repo.split("/")
        for c in components:
            if _COMPONENT_RE.fullmatch(c) is None:
                raise fail(f"bad repository component {c!r} (lowercase letters, digits, . _ -)")
        return cls(host, repo, tag, digest)

    @property
    def reference(self) -> str:
        """What the registry API is asked for: the digest when pinned, else the tag."""
        return self.digest or self.tag

    @property
    def familiar(self) -> str:
        """``repo:tag`` as ``docker images`` shows it (Docker Hub's host and ``library/``
        dropped): the RepoTag of an archive or a load."""
        if self.host == DOCKER_HUB:
            repo = self.repository.removeprefix("library/")
            return f"{repo}:{self.tag}"
        return f"{self.host}/{self.repository}:{self.tag}"

    def __str__(self) -> str:
        text = f"{self.host}/{self.repository}:{self.tag}"
        return f"{text}@{self.digest}" if self.digest else text

    def same_registry(self, other: ImageRef) -> bool:
        return self.host.lower() == other.host.lower()


def registry_client(ref: ImageRef, *, insecure: bool = False) -> RegistryClient:
    """A client for the registry holding ``ref``: plain HTTP for loopback hosts or with
    ``insecure``, else HTTPS; credentials from ``~/.docker/config.json``."""
    api_host = _DOCKER_HUB_API if ref.host == DOCKER_HUB else ref.host
    scheme = "http" if insecure or is_loopback_host(api_host) else "https"
    return RegistryClient(f"{scheme}://{api_host}")
