"""Where an assembled image goes: an OCI layout, a Docker archive, the Docker daemon, a registry.
Owns each output's format and the blob-by-blob transfer (skip, mount, or stream an upload).

- ``oci:DIR[:TAG]`` — OCI image layout; blobs written atomically, ones already there kept;
  ``index.json`` gets (or replaces) the entry whose ``org.opencontainers.image.ref.name`` is
  the tag.
- ``docker-archive:FILE`` — the ``docker save`` / ``docker load`` tar (``manifest.json``, the
  config, one file per layer as the layer came: uncompressed or gzip).
- :func:`load_image` — that archive streamed into the daemon (optional ``docker`` package).
- :func:`push_image` — ``HEAD`` each blob (present: skip), else mount it from the base's
  repository on the same registry, else stream it up; then ``PUT`` the manifest.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from modelkit.errors import ImageError, RegistryError
from modelkit.image.assemble import AssembledImage, ImageBlob, ProgressFn, throttled
from modelkit.image.base import REF_NAME, docker_client
from modelkit.image.layers import BytesFn, TarMember, atomic_write_bytes, iter_tar
from modelkit.image.oci import OCI_INDEX, OCI_MANIFEST, canonical_json
from modelkit.image.refs import ImageRef, registry_client
from modelkit.registry.client import RegistryClient, summarize_error_body

__all__ = [
    "Output",
    "docker_archive_members",
    "load_image",
    "parse_output",
    "push_image",
    "write_docker_archive",
    "write_oci_layout",
    "write_output",
]


def _ignore(_event: dict[str, Any]) -> None:
    pass


@dataclass(frozen=True)
class Output:
    """A parsed ``--output``: ``kind`` is ``oci`` or ``docker-archive``."""

    kind: str
    path: Path
    tag: str | None = None

    def __str__(self) -> str:
        return f"{self.kind}:{self.path}" + (f":{self.tag}" if self.tag else "")


def parse_output(text: str) -> Output:
    """``oci:DIR[:TAG]`` or ``docker-archive:FILE``; :class:`ImageError` for anything else."""
    kind, sep, rest = text.partition(":")
    if sep and rest and kind == "oci":
        path, colon, tag = rest.rpartition(":")
        if colon and path and tag and "/" not in tag:
            return Output("oci", Path(path), tag)
        return Output("oci", Path(rest))
    if sep and rest and kind == "docker-archive":
        return Output("docker-archive", Path(rest))
    raise ImageError(f"unknown output {text!r}: use oci:DIR[:TAG] or docker-archive:FILE")


def _byte_events(emit: ProgressFn, status: str, blob: ImageBlob) -> BytesFn:
    event: dict[str, Any] = {"status": status, "digest": blob.digest, "total": blob.size}
    emit({**event, "completed": 0})
    return throttled(emit, event, blob.size)


# -- OCI image layout ------------------------------------------------------------------------


def _write_blob_file(directory: Path, blob: ImageBlob, on_bytes: BytesFn | None) -> bool:
    """Write one blob as ``directory/<hex>``, verified; False when it was already there."""
    final = directory / blob.digest[7:]
    # Blob files only ever get their name after their bytes were verified (below), so one
    # of the right size is the right blob: re-reading GBs to prove it again buys nothing.
    with contextlib.suppress(FileNotFoundError):
        if final.stat().st_size == blob.size:
            return False
    tmp = directory / f".tmp-{os.getpid()}-{blob.digest[7:19]}"
    h = hashlib.sha256()
    size = 0
    try:
        with open(tmp, "wb") as f:
            for chunk in blob.stream(on_bytes):
                h.update(chunk)
                size += len(chunk)
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        got = "sha256:" + h.hexdigest()
        if got != blob.digest or size != blob.size:
            raise ImageError(
                f"{blob.label} {blob.digest}: wrote {size} bytes hashing to {got}"
                " (did a source file change since the image was assembled?)"
            )
        os.replace(tmp, final)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return True


def _index_entries(path: Path, tag: str) -> list[dict[str, Any]]:
    """The other images of an existing ``index.json`` (the one tagged ``tag`` is replaced)."""
    try:
        data = json.loads(path.read_bytes())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        raise ImageError(f"{path}: cannot update it ({exc})") from None
    manifests = data.get("manifests") if isinstance(data, dict) else None
    if not isinstance(manifests, list):
        raise ImageError(f"{path}: not an OCI index")
    return [
        m
        for m in manifests
        if not (isinstance(m, dict) and (m.get("annotations") or {}).get(REF_NAME) == tag)
    ]


def write_oci_layout(
    image: AssembledImage, directory: Path, tag: str, progress: ProgressFn | None = None
) -> dict[str, str]:
    """Write ``image`` into an OCI image layout at ``directory`` (created if needed), tagged
    ``tag``. Returns digest → ``"written"`` or ``"exists"``."""
    emit = progress or _ignore
    blobs_dir = directory / "blobs" / "sha256"
    try:
        blobs_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ImageError(f"cannot create {blobs_dir}: {exc.strerror}") from None
    layout = directory / "oci-layout"
    layout_bytes = canonical_json({"imageLayoutVersion": "1.0.0"})
    if not layout.is_file():
        atomic_write_bytes(layout, layout_bytes)
    outcome: dict[str, str] = {}
    manifest = image.manifest_bytes
    manifest_blob = ImageBlob(
        image.manifest_descriptor, lambda _on_bytes: iter([manifest]), "manifest"
    )
    for blob in [*image.blobs(), manifest_blob]:
        if blob.digest in outcome:
            continue
        on_bytes = _byte_events(emit, f"writing {blob.label}", blob)
        written = _write_blob_file(blobs_dir, blob, on_bytes)
        emit(
            {
                "status": f"writing {blob.label}",
                "digest": blob.digest,
                "total": blob.size,
                "completed": blob.size,
            }
        )
        outcome[blob.digest] = "written" if written else "exists"
    index_path = directory / "index.json"
    entry = image.manifest_descriptor.to_json()
    entry["annotations"] = {REF_NAME: tag}
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [*_index_entries(index_path, tag), entry],
    }
    atomic_write_bytes(index_path, canonical_json(index))
    return outcome


# -- Docker archive (docker save / docker load) ----------------------------------------------


def docker_archive_members(image: AssembledImage, repo_tag: str) -> list[TarMember]:
    """The archive's entries: ``manifest.json``, ``<hex>.json`` (config), ``<hex>.tar``."""
    config = image.config_bytes
    config_name = f"{image.config_blob.digest[7:]}.json"
    layer_names = [f"{blob.digest[7:]}.tar" for blob in image.layers]
    entry = {"Config": config_name, "RepoTags": [repo_tag], "Layers": layer_names}
    manifest = canonical_json([entry])
    members = [
        TarMember("manifest.json", len(manifest), 0o444, False, lambda: iter([manifest])),
        TarMember(config_name, len(config), 0o444, False, lambda: iter([config])),
    ]
    seen: set[str] = set()
    for name, blob in zip(layer_names, image.layers, strict=True):
        if name in seen:
            continue  # a layer used twice is stored once; manifest.json names it twice
        seen.add(name)
        members.append(TarMember(name, blob.size, 0o444, False, _blob_chunks(blob)))
    return members


def _blob_chunks(blob: ImageBlob) -> Callable[[], Iterator[bytes]]:
    return lambda: blob.stream(None)


def docker_archive_stream(
    image: AssembledImage, repo_tag: str, on_bytes: BytesFn | None = None
) -> Iterator[bytes]:
    return iter_tar(docker_archive_members(image, repo_tag), on_bytes)


def write_docker_archive(
    image: AssembledImage, path: Path, repo_tag: str, progress: ProgressFn | None = None
) -> None:
    """Write the ``docker load`` tar to ``path`` (atomically: a temp file, then a rename)."""
    emit = progress or _ignore
    members = docker_archive_members(image, repo_tag)
    total = sum(m.size for m in members)
    event = {"status": "writing archive", "digest": str(path), "total": total}
    on_bytes = throttled(emit, event, total)

    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            for chunk in iter_tar(members, on_bytes):
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        raise ImageError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    emit({"status": "writing archive", "digest": str(path), "total": total, "completed": total})


def load_image(image: AssembledImage, repo_tag: str) -> list[str]:
    """Stream the Docker archive into the local daemon (``docker load``); returns the tags
    the daemon reports. Needs the ``docker`` package and a daemon (:class:`ImageError`)."""
    client = docker_client()
    try:
        loaded = client.images.load(docker_archive_stream(image, repo_tag))
    except ImageError:
        raise
    except Exception as exc:  # the SDK's APIError and connection errors
        raise ImageError(f"docker load failed: {exc}") from None
    tags: list[str] = []
    for img in loaded or []:
        tags.extend(getattr(img, "tags", []) or [])
    return tags


# -- push to a registry ----------------------------------------------------------------------


def _upload_stream(
    client: RegistryClient, location: str, blob: ImageBlob, on_bytes: BytesFn
) -> str:
    """One streamed ``PATCH`` of the whole blob; the location to commit it at.

    The body is produced again (from the start) if an auth challenge forces a retry.
    """
    r = client.request(
        "PATCH",
        location,
        what=f"upload {blob.label}",
        headers={
            "Content-Type": "application/octet-stream",
            "Content-Length": str(blob.size),
            "Content-Range": f"0-{blob.size - 1}",
        },
        content=lambda: blob.stream(on_bytes),
    )
    if r.status_code not in (202, 204):
        raise RegistryError(
            f"upload {blob.label}: PATCH {r.url} answered {r.status_code}:"
            f" {summarize_error_body(r.content) or r.reason_phrase}",
            url=str(r.url),
            status=r.status_code,
        )
    nxt = r.headers.get("Docker-Upload-Location") or r.headers.get("Location") or location
    return str(r.url.join(nxt))


def _push_blob(client: RegistryClient, target: ImageRef, blob: ImageBlob, emit: ProgressFn) -> str:
    """Make the registry hold ``blob`` in the target repository: "exists", "mounted" or
    "uploaded"."""
    repo = target.repository
    event: dict[str, Any] = {
        "status": f"pushing {blob.label} {blob.digest[7:19]}",
        "digest": blob.digest,
        "total": blob.size,
    }
    if client.blob_size(repo, blob.digest) is not None:
        emit({**event, "completed": blob.size})
        return "exists"
    source = blob.mount_from
    mount = source is not None and source.same_registry(target) and source.repository != repo
    location = client.start_upload(
        repo,
        mount=blob.digest if mount else None,
        mount_from=source.repository if mount and source is not None else None,
    )
    if location is None:
        emit({**event, "completed": blob.size})
        return "mounted"
    on_bytes = _byte_events(emit, str(event["status"]), blob)
    location = _upload_stream(client, location, blob, on_bytes)
    client.finish_upload(location, blob.digest)
    emit({**event, "completed": blob.size})
    return "uploaded"


def push_image(
    image: AssembledImage,
    ref: ImageRef | str,
    *,
    insecure: bool = False,
    progress: ProgressFn | None = None,
    client: RegistryClient | None = None,
) -> dict[str, str]:
    """Push ``image`` as ``ref`` (``REGISTRY/REPO:TAG``). Returns digest → "exists",
    "mounted" or "uploaded". A base layer from another registry is streamed across."""
    target = ImageRef.parse(ref) if isinstance(ref, str) else ref
    if target.digest is not None:
        raise ImageError(f"push to a tag, not a digest: {target}")
    emit = progress or _ignore
    own = client is None
    reg = client if client is not None else registry_client(target, insecure=insecure)
    outcome: dict[str, str] = {}
    try:
        for blob in image.blobs():
            if blob.digest not in outcome:
                outcome[blob.digest] = _push_blob(reg, target, blob, emit)
        emit({"status": "pushing manifest"})
        reg.put_manifest(target.repository, target.tag, image.manifest_bytes, OCI_MANIFEST)
        emit({"status": f"pushed {target} {image.digest}"})
        return outcome
    except httpx.HTTPError as exc:  # a body stream that failed mid-request
        raise RegistryError(f"push to {target.host} failed: {exc}") from exc
    finally:
        if own:
            reg.close()


def write_output(
    image: AssembledImage, output: str | Output, ref: ImageRef, progress: ProgressFn | None = None
) -> Output:
    """Write ``image`` to ``output`` (parsed if a string); ``ref`` names it there."""
    out = parse_output(output) if isinstance(output, str) else output
    if out.kind == "oci":
        write_oci_layout(image, out.path, out.tag or ref.tag, progress)
    else:
        write_docker_archive(image, out.path, ref.familiar, progress)
    return out
