"""OCI image data as plain dicts: descriptors, the image config, manifests and indexes.
Owns media types, platform choice, reading Docker v2 / OCI manifests and canonical JSON.

Everything written is serialized with :func:`canonical_json` (sorted keys, compact), so the
same inputs always give the same config and manifest digests.
"""

from __future__ import annotations

import copy
import json
import platform as _platform
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from modelkit.errors import ImageError

__all__ = [
    "ACCEPT_ANY_MANIFEST",
    "DIGEST_RE",
    "DOCKER_CONFIG",
    "DOCKER_LAYER_GZIP",
    "DOCKER_MANIFEST",
    "DOCKER_MANIFEST_LIST",
    "EPOCH",
    "OCI_CONFIG",
    "OCI_INDEX",
    "OCI_LAYER",
    "OCI_LAYER_GZIP",
    "OCI_MANIFEST",
    "BlobDescriptor",
    "ConfigChanges",
    "HistoryLayer",
    "ImageManifest",
    "Platform",
    "canonical_json",
    "created_timestamp",
    "extend_config",
    "host_platform",
    "image_manifest",
    "is_index",
    "oci_layer_media_type",
    "parse_index",
    "parse_manifest",
    "scratch_config",
    "select_platform",
]

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_LAYER_TAR = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"

ACCEPT_ANY_MANIFEST = ", ".join([OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST])

EPOCH = "1970-01-01T00:00:00Z"
OLLAMA_PORT = "11434/tcp"

# Digests become file names (``blobs/sha256/<hex>``): anything looser could leave the folder.
DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")

# A Docker base's layers keep their bytes (and digests) in an OCI manifest under the
# equivalent OCI media types; mixing the two vocabularies in one manifest confuses some tools.
_DOCKER_TO_OCI_LAYER = {
    DOCKER_LAYER_GZIP: OCI_LAYER_GZIP,
    DOCKER_LAYER_TAR: OCI_LAYER,
    DOCKER_FOREIGN_LAYER: "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
}


def canonical_json(obj: Any) -> bytes:
    """Sorted keys, no spaces, UTF-8: one byte string per value."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def oci_layer_media_type(media_type: str) -> str:
    return _DOCKER_TO_OCI_LAYER.get(media_type, media_type)


def created_timestamp(source_date_epoch: int | None) -> str:
    """RFC 3339 UTC: the Unix epoch unless ``SOURCE_DATE_EPOCH`` was given (reproducible
    builds' convention)."""
    if source_date_epoch is None:
        return EPOCH
    return datetime.fromtimestamp(source_date_epoch, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- platforms -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Platform:
    os: str = "linux"
    architecture: str = "amd64"
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)

    @classmethod
    def from_json(cls, obj: Any) -> Platform | None:
        if not isinstance(obj, dict):
            return None
        return cls(
            str(obj.get("os", "")), str(obj.get("architecture", "")), str(obj.get("variant", ""))
        )


_MACHINE_TO_GOARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm",
    "ppc64le": "ppc64le",
    "s390x": "s390x",
    "riscv64": "riscv64",
}


def host_platform() -> Platform:
    """linux/<this machine's architecture in Go's spelling> (amd64 when unknown)."""
    machine = _platform.machine().lower()
    return Platform("linux", _MACHINE_TO_GOARCH.get(machine, "amd64"))


# -- descriptors and manifests ---------------------------------------------------------------


@dataclass(frozen=True)
class BlobDescriptor:
    """An OCI descriptor: what a manifest or index says about one blob."""

    media_type: str
    digest: str
    size: int
    annotations: dict[str, str] = field(default_factory=dict)
    platform: Platform | None = None

    def to_json(self) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.annotations:
            obj["annotations"] = dict(self.annotations)
        if self.platform is not None:
            p: dict[str, str] = {
                "os": self.platform.os,
                "architecture": self.platform.architecture,
            }
            if self.platform.variant:
                p["variant"] = self.platform.variant
            obj["platform"] = p
        return obj

    @classmethod
    def from_json(cls, obj: Any, *, where: str) -> BlobDescriptor:
        if not isinstance(obj, dict):
            raise ImageError(f"{where}: a descriptor is not an object")
        media_type, digest, size = obj.get("mediaType", ""), obj.get("digest"), obj.get("size")
        if not isinstance(digest, str) or DIGEST_RE.fullmatch(digest) is None:
            raise ImageError(f"{where}: unsupported or missing digest {digest!r}")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ImageError(f"{where}: descriptor of {digest} has no valid size")
        annotations = obj.get("annotations")
        return cls(
            media_type=str(media_type),
            digest=digest,
            size=size,
            annotations=dict(annotations) if isinstance(annotations, dict) else {},
            platform=Platform.from_json(obj.get("platform")),
        )


@dataclass(frozen=True)
class ImageManifest:
    """A single-platform image manifest read back (OCI or Docker v2 schema 2)."""

    media_type: str
    config: BlobDescriptor
    layers: tuple[BlobDescriptor, ...]


def load_json_object(raw: bytes, where: str) -> dict[str, Any]:
    """``raw`` parsed as a JSON object; :class:`ImageError` naming ``where`` otherwise."""
    try:
        obj = json.loads(raw)
    except ValueError as exc:
        raise ImageError(f"{where}: not JSON ({exc})") from None
    if not isinstance(obj, dict):
        raise ImageError(f"{where}: not a JSON object")
    return obj


def _media_type_of(obj: dict[str, Any], content_type: str) -> str:
    declared = obj.get("mediaType")
    if isinstance(declared, str) and declared:
        return declared
    ct = content_type.split(";")[0].strip()
    if ct in (OCI_MANIFEST, OCI_INDEX, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST):
        return ct
    # The OCI spec lets mediaType be absent: tell an index from a manifest by its fields.
    return OCI_INDEX if "manifests" in obj else OCI_MANIFEST


def is_index(raw: bytes, content_type: str = "") -> bool:
    """Whether ``raw`` is an OCI index or a Docker manifest list (else a single manifest)."""
    obj = load_json_object(raw, "manifest")
    return _media_type_of(obj, content_type) in (OCI_INDEX, DOCKER_MANIFEST_LIST)


def parse_manifest(raw: bytes, content_type: str = "", *, where: str = "manifest") -> ImageManifest:
    obj = load_json_object(raw, where)
    media_type = _media_type_of(obj, content_type)
    if media_type not in (OCI_MANIFEST, DOCKER_MANIFEST):
        raise ImageError(f"{where}: unsupported manifest type {media_type!r}")
    if obj.get("schemaVersion") != 2:
        raise ImageError(f"{where}: only schemaVersion 2 manifests are supported")
    layers = obj.get("layers")
    if not isinstance(layers, list):
        raise ImageError(f"{where}: no layers list")
    return ImageManifest(
        media_type=media_type,
        config=BlobDescriptor.from_json(obj.get("config"), where=f"{where} config"),
        layers=tuple(BlobDescriptor.from_json(x, where=f"{where} layer") for x in layers),
    )


def parse_index(raw: bytes, *, where: str = "index") -> list[BlobDescriptor]:
    """The ``manifests`` of an OCI index or Docker manifest list (also OCI ``index.json``)."""
    obj = load_json_object(raw, where)
    manifests = obj.get("manifests")
    if not isinstance(manifests, list):
        raise ImageError(f"{where}: no manifests list")
    return [BlobDescriptor.from_json(m, where=where) for m in manifests]


def select_platform(
    manifests: list[BlobDescriptor], want: Platform, *, where: str
) -> BlobDescriptor:
    """The entry for ``want`` (its variant ignored when the entry has none), else linux/amd64,
    else the only entry; attestation entries (``unknown/unknown``) never count."""
    usable = [m for m in manifests if m.platform is None or m.platform.architecture != "unknown"]

    def matches(m: BlobDescriptor, p: Platform) -> bool:
        return (
            m.platform is not None
            and m.platform.os == p.os
            and m.platform.architecture == p.architecture
            and (not p.variant or not m.platform.variant or m.platform.variant == p.variant)
        )

    for p in (want, Platform("linux", "amd64")):
        for m in usable:
            if matches(m, p):
                return m
    if len(usable) == 1:
        return usable[0]
    have = ", ".join(str(m.platform) for m in usable if m.platform) or "none"
    raise ImageError(f"{where}: no image for {want} (platforms: {have})")


def image_manifest(
    config: BlobDescriptor, layers: list[BlobDescriptor], annotations: dict[str, str] | None
) -> bytes:
    """An OCI image manifest's bytes (canonical JSON)."""
    obj: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.to_json(),
        "layers": [x.to_json() for x in layers],
    }
    if annotations:
        obj["annotations"] = dict(annotations)
    return canonical_json(obj)


# -- the image config ------------------------------------------------------------------------


def scratch_config(platform: Platform) -> dict[str, Any]:
    """The config of an empty image (``--model-only``: no runtime underneath)."""
    obj: dict[str, Any] = {
        "architecture": platform.architecture,
        "os": platform.os,
        "config": {},
        "rootfs": {"type": "layers", "diff_ids": []},
        "history": [],
    }
    if platform.variant:
        obj["variant"] = platform.variant
    return obj


@dataclass(frozen=True)
class HistoryLayer:
    """A layer appended to the image: its diff_id and the history line that explains it."""

    diff_id: str
    created_by: str


@dataclass
class ConfigChanges:
    """What assembling changes in the base's config."""

    created: str = EPOCH
    env: dict[str, str] = field(default_factory=dict)
    """Set (or override) in ``Env``, in this order after the base's variables."""
    labels: dict[str, str] = field(default_factory=dict)
    exposed_ports: tuple[str, ...] = (OLLAMA_PORT,)
    entrypoint: list[str] | None = None
    cmd: list[str] | None = None
    layers: list[HistoryLayer] = field(default_factory=list)


def _env_dict(env: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    if isinstance(env, list):
        for item in env:
            if isinstance(item, str):
                key, _, value = item.partition("=")
                out[key] = value
    return out


def extend_config(base: dict[str, Any], changes: ConfigChanges) -> dict[str, Any]:
    """The base config with the model's layers, environment, labels and ports added.

    Entrypoint, Cmd, User, WorkingDir and everything else the base sets are kept unless
    ``changes`` says otherwise: the runtime image knows how to start itself.
    """
    cfg = copy.deepcopy(base)
    inner = cfg.get("config")
    if not isinstance(inner, dict):
        inner = {}
    env = _env_dict(inner.get("Env"))
    env.update(changes.env)
    if env:
        inner["Env"] = [f"{k}={v}" for k, v in env.items()]
    ports = inner.get("ExposedPorts")
    ports = dict(ports) if isinstance(ports, dict) else {}
    for port in changes.exposed_ports:
        ports.setdefault(port, {})
    if ports:
        inner["ExposedPorts"] = ports
    labels = inner.get("Labels")
    labels = dict(labels) if isinstance(labels, dict) else {}
    labels.update(changes.labels)
    if labels:
        inner["Labels"] = labels
    if changes.entrypoint is not None:
        inner["Entrypoint"] = list(changes.entrypoint)
        if changes.cmd is None:
            inner.pop("Cmd", None)  # Docker's rule: a new entrypoint resets the base's Cmd
    if changes.cmd is not None:
        inner["Cmd"] = list(changes.cmd)
    cfg["config"] = inner
    cfg["created"] = changes.created
    rootfs = cfg.get("rootfs")
    diff_ids = list(rootfs.get("diff_ids") or []) if isinstance(rootfs, dict) else []
    history = cfg.get("history")
    history = list(history) if isinstance(history, list) else []
    for layer in changes.layers:
        diff_ids.append(layer.diff_id)
        history.append(
            {"created": changes.created, "created_by": layer.created_by, "comment": "modelkit"}
        )
    cfg["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
    cfg["history"] = history
    # Docker-only leftovers would describe the base's last build step, not this image.
    for key in ("container", "container_config", "docker_version", "id", "parent"):
        cfg.pop(key, None)
    return cfg
