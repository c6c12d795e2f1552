"""The runtime (base) image an assembled image starts from, read without a Docker daemon.
Owns reading its config and layer list from an OCI layout, a registry or a Docker archive.

Sources, by prefix:

- ``oci:DIR[:TAG]`` — an OCI image layout (``index.json``, ``blobs/sha256/<hex>``);
- ``docker-archive:FILE[:NAME:TAG]`` — a ``docker save`` tar;
- ``docker-daemon:NAME[:TAG]`` — the local Docker daemon through the optional ``docker``
  package (its ``save`` stream, spooled to a temp file and read as a Docker archive);
- anything else — ``REGISTRY/REPO[:TAG][@DIGEST]`` in a registry.

Only the manifest and config are read up front; the layers' bytes are streamed by
:meth:`BaseImage.chunks` when an output needs them (a push to the base's own registry mounts
or skips them instead).
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelkit.errors import ImageError, RegistryError
from modelkit.image.layers import file_chunks
from modelkit.image.oci import (
    ACCEPT_ANY_MANIFEST,
    OCI_LAYER,
    OCI_LAYER_GZIP,
    BlobDescriptor,
    Platform,
    is_index,
    load_json_object,
    parse_index,
    parse_manifest,
    scratch_config,
    select_platform,
)
from modelkit.image.refs import ImageRef, registry_client
from modelkit.registry.client import RegistryClient, summarize_error_body
from modelkit.store import sha256_digest

__all__ = ["BaseImage", "read_base", "scratch_base"]

MAX_JSON_BLOB = 16 << 20  # a config or manifest bigger than this is not one
REF_NAME = "org.opencontainers.image.ref.name"

ChunksFn = Callable[[BlobDescriptor], Iterator[bytes]]


def _no_layers(desc: BlobDescriptor) -> Iterator[bytes]:
    raise ImageError(f"this image has no layer {desc.digest}")


@dataclass
class BaseImage:
    """A base image: its config (parsed) and layers (descriptors), and how to read them.

    ``registry`` is where the image lives when it came from a registry: a push to the same
    host mounts its layers from there instead of moving their bytes.
    """

    ref: str
    config: dict[str, Any]
    layers: tuple[BlobDescriptor, ...] = ()
    registry: ImageRef | None = None
    _chunks: ChunksFn = _no_layers
    _cleanup: list[Callable[[], None]] = field(default_factory=list)

    def chunks(self, desc: BlobDescriptor) -> Iterator[bytes]:
        """The bytes of one of the base's layers, streamed and checked against its digest."""
        return _verified(self._chunks(desc), desc, self.ref)

    def close(self) -> None:
        while self._cleanup:
            self._cleanup.pop()()


def _verified(chunks: Iterator[bytes], desc: BlobDescriptor, where: str) -> Iterator[bytes]:
    h = hashlib.sha256()
    size = 0
    for chunk in chunks:
        h.update(chunk)
        size += len(chunk)
        yield chunk
    got = "sha256:" + h.hexdigest()
    if got != desc.digest or size != desc.size:
        raise ImageError(
            f"{where}: blob {desc.digest} has the wrong content (got {got}, {size} bytes)"
        )


def _check_config(config: dict[str, Any], where: str) -> dict[str, Any]:
    rootfs = config.get("rootfs")
    if not isinstance(rootfs, dict) or not isinstance(rootfs.get("diff_ids"), list):
        raise ImageError(f"{where}: the image config has no rootfs.diff_ids")
    return config


def scratch_base(platform: Platform) -> BaseImage:
    """No base at all (``--model-only``): an empty image for ``platform``."""
    return BaseImage(ref="scratch", config=scratch_config(platform))


# -- OCI layout ------------------------------------------------------------------------------


def _split_path_tag(spec: str) -> tuple[str, str | None]:
    """``DIR[:TAG]``: a last ``:`` part without ``/`` is a tag (paths rarely end that way)."""
    path, sep, tag = spec.rpartition(":")
    if sep and path and tag and "/" not in tag:
        return path, tag
    return spec, None


def _read_layout_blob(root: Path, desc: BlobDescriptor, where: str) -> bytes:
    if desc.size > MAX_JSON_BLOB:
        raise ImageError(f"{where}: {desc.digest} is too big for a manifest or config")
    path = root / "blobs" / "sha256" / desc.digest[7:]
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ImageError(f"{where}: cannot read {path}: {exc.strerror}") from None
    if sha256_digest(raw) != desc.digest:
        raise ImageError(f"{where}: {path} does not match its digest")
    return raw


def _from_oci_layout(spec: str, platform: Platform) -> BaseImage:
    dir_text, tag = _split_path_tag(spec)
    root = Path(dir_text)
    where = f"oci:{spec}"
    try:
        index_raw = (root / "index.json").read_bytes()
    except OSError as exc:
        raise ImageError(f"{where}: not an OCI image layout ({exc.strerror}: index.json)") from None
    entries = parse_index(index_raw, where=f"{where} index.json")
    if tag is not None:
        entries = [e for e in entries if e.annotations.get(REF_NAME) == tag]
        if not entries:
            raise ImageError(f"{where}: no image tagged {tag!r} in index.json")
    if not entries:
        raise ImageError(f"{where}: index.json lists no image")
    desc = select_platform(entries, platform, where=where) if len(entries) > 1 else entries[0]
    raw = _read_layout_blob(root, desc, where)
    for _ in range(4):  # nested indexes: an image index inside index.json is common
        if not is_index(raw, desc.media_type):
            break
        desc = select_platform(parse_index(raw, where=where), platform, where=where)
        raw = _read_layout_blob(root, desc, where)
    manifest = parse_manifest(raw, desc.media_type, where=where)
    config = load_json_object(_read_layout_blob(root, manifest.config, where), f"{where} config")

    def chunks(d: BlobDescriptor) -> Iterator[bytes]:
        return file_chunks(root / "blobs" / "sha256" / d.digest[7:])

    return BaseImage(
        ref=where,
        config=_check_config(config, where),
        layers=manifest.layers,
        _chunks=chunks,
    )


# -- registry --------------------------------------------------------------------------------


def fetch_manifest(client: RegistryClient, ref: ImageRef, reference: str) -> tuple[bytes, str]:
    """``(bytes, content type)`` of a manifest or index; any of the four types accepted."""
    url = client.url(f"/v2/{ref.repository}/manifests/{reference}")
    headers = {"Accept": ACCEPT_ANY_MANIFEST}
    r = client.request("GET", url, what="get image manifest", headers=headers)
    if r.status_code == 404:
        raise ImageError(f"image {ref.repository}:{reference} not found on {ref.host}")
    if r.status_code != 200:
        raise RegistryError(
            f"get image manifest: GET {url} answered {r.status_code}:"
            f" {summarize_error_body(r.content) or r.reason_phrase}",
            url=url,
            status=r.status_code,
        )
    raw = r.content
    if reference.startswith("sha256:") and sha256_digest(raw) != reference:
        raise ImageError(f"{ref}: the registry's manifest does not match {reference}")
    return raw, r.headers.get("Content-Type", "")


def _registry_chunks(client: RegistryClient, ref: ImageRef) -> ChunksFn:
    def chunks(desc: BlobDescriptor) -> Iterator[bytes]:
        with client.open_blob(ref.repository, desc.digest) as r:
            yield from r.iter_bytes(4 << 20)

    return chunks


def _read_registry_blob(client: RegistryClient, ref: ImageRef, desc: BlobDescriptor) -> bytes:
    if desc.size > MAX_JSON_BLOB:
        raise ImageError(f"{ref}: config {desc.digest} is too big")
    raw = b"".join(_verified(_registry_chunks(client, ref)(desc), desc, str(ref)))
    return raw


def _from_registry(
    text: str, platform: Platform, insecure: bool, client: RegistryClient | None
) -> BaseImage:
    ref = ImageRef.parse(text)
    own = client is None
    reg = client if client is not None else registry_client(ref, insecure=insecure)
    try:
        raw, content_type = fetch_manifest(reg, ref, ref.reference)
        if is_index(raw, content_type):
            desc = select_platform(parse_index(raw, where=str(ref)), platform, where=str(ref))
            raw, content_type = fetch_manifest(reg, ref, desc.digest)
        manifest = parse_manifest(raw, content_type, where=str(ref))
        config = load_json_object(_read_registry_blob(reg, ref, manifest.config), f"{ref} config")
    except BaseException:
        if own:
            reg.close()
        raise
    image = BaseImage(
        ref=str(ref),
        config=_check_config(config, str(ref)),
        layers=manifest.layers,
        registry=ref,
        _chunks=_registry_chunks(reg, ref),
    )
    if own:
        image._cleanup.append(reg.close)
    return image


# -- Docker archive (docker save) and the Docker daemon ----------------------------------------


def _tar_index(path: Path) -> dict[str, tarfile.TarInfo]:
    try:
        with tarfile.open(path, "r:") as tar:
            return {m.name.removeprefix("./"): m for m in tar.getmembers() if m.isfile()}
    except (OSError, tarfile.TarError) as exc:
        raise ImageError(f"{path}: not a readable Docker archive ({exc})") from None


def _member_chunks(path: Path, member: tarfile.TarInfo) -> Iterator[bytes]:
    return file_chunks(path, member.offset_data, member.size)


def _from_docker_archive(path: Path, wanted: str | None, where: str) -> BaseImage:
    members = _tar_index(path)

    def read(name: str) -> bytes:
        member = members.get(name)
        if member is None:
            raise ImageError(f"{where}: the archive has no {name}")
        if member.size > MAX_JSON_BLOB:
            raise ImageError(f"{where}: {name} is too big")
        return b"".join(_member_chunks(path, member))

    try:
        entries = json.loads(read("manifest.json"))
    except ValueError:
        entries = None
    if not isinstance(entries, list) or not entries:
        raise ImageError(f"{where}: manifest.json lists no image")
    entry = entries[0]
    if wanted is not None:
        tagged = [e for e in entries if isinstance(e, dict) and wanted in (e.get("RepoTags") or [])]
        if not tagged:
            raise ImageError(f"{where}: no image tagged {wanted!r} in the archive")
        entry = tagged[0]
    if not isinstance(entry, dict) or not isinstance(entry.get("Layers"), list):
        raise ImageError(f"{where}: manifest.json has no Layers")
    config = load_json_object(read(str(entry.get("Config", ""))), f"{where} config")
    layers: list[BlobDescriptor] = []
    by_digest: dict[str, tarfile.TarInfo] = {}
    for name in entry["Layers"]:
        member = members.get(str(name))
        if member is None:
            raise ImageError(f"{where}: the archive has no layer {name}")
        # The archive names its layers by path, not digest: one pass gives both the digest
        # and whether the layer is gzip (docker load accepts both).
        h = hashlib.sha256()
        head = b""
        for chunk in _member_chunks(path, member):
            head = head or chunk[:2]
            h.update(chunk)
        digest = "sha256:" + h.hexdigest()
        media_type = OCI_LAYER_GZIP if head == b"\x1f\x8b" else OCI_LAYER
        layers.append(BlobDescriptor(media_type, digest, member.size))
        by_digest[digest] = member

    def chunks(d: BlobDescriptor) -> Iterator[bytes]:
        return _member_chunks(path, by_digest[d.digest])

    return BaseImage(
        ref=where, config=_check_config(config, where), layers=tuple(layers), _chunks=chunks
    )


def _split_archive_spec(spec: str) -> tuple[str, str | None]:
    """``FILE[:NAME:TAG]``: a file name first, then an optional RepoTag to pick."""
    if os.path.exists(spec):
        return spec, None
    path, sep, rest = spec.partition(":")
    return (path, rest or None) if sep else (spec, None)


def docker_module() -> Any:
    """The optional ``docker`` SDK, imported only when a daemon is really wanted."""
    try:
        return importlib.import_module("docker")
    except ImportError:
        raise ImageError(
            "talking to the Docker daemon needs the docker Python package (pip install docker)"
        ) from None


def docker_client() -> Any:
    """A connected Docker SDK client, or :class:`ImageError` when no daemon answers."""
    docker = docker_module()
    try:
        client = docker.from_env()
        client.ping()
    except Exception as exc:  # the SDK raises DockerException or plain connection errors
        raise ImageError(f"no Docker daemon answered: {exc}") from None
    return client


def _from_docker_daemon(name: str) -> BaseImage:
    client = docker_client()
    tmp = Path(tempfile.mkdtemp(prefix="modelkit-base-"))
    try:
        try:
            image = client.images.get(name)
            stream = image.save(named=True)
            archive = tmp / "image.tar"
            with open(archive, "wb") as f:
                for chunk in stream:
                    f.write(chunk)
        except Exception as exc:
            raise ImageError(f"docker-daemon:{name}: {exc}") from None
        base = _from_docker_archive(archive, None, f"docker-daemon:{name}")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    base._cleanup.append(lambda: shutil.rmtree(tmp, ignore_errors=True))
    return base


# -- dispatch ---------------------------------------------------------------------------------


def read_base(
    ref: str,
    *,
    platform: Platform,
    insecure: bool = False,
    client: RegistryClient | None = None,
) -> BaseImage:
    """Read a base image by reference (see the module docstring for the forms).

    ``client`` (registry references only) is used instead of a new connection. Call
    :meth:`BaseImage.close` when done.
    """
    if ref.startswith("oci:"):
        return _from_oci_layout(ref[4:], platform)
    if ref.startswith("docker-archive:"):
        path, wanted = _split_archive_spec(ref[15:])
        return _from_docker_archive(Path(path), wanted, ref)
    if ref.startswith("docker-daemon:"):
        return _from_docker_daemon(ref[14:])
    return _from_registry(ref, platform, insecure, client)
