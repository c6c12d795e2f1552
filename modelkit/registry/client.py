"""A small OCI distribution (Docker Registry v2) client over httpx (reference §4.1).

Only what pull and push need: manifest GET/PUT, blob HEAD/GET (with ``Range``), and blob
uploads (``POST`` → ``PATCH``… → ``PUT ?digest=``, or a cross-repository mount). Every failure
becomes a :class:`~modelkit.errors.RegistryError` naming the URL and summarizing the
registry's error body (``{"errors":[{"code","message"}]}``).

Scheme: ``https`` unless the host is loopback (``localhost``, ``127.x``, ``::1``) or
``insecure=True``; a name spelled ``http://…`` needs one of those.
"""

from __future__ import annotations

import json
import os
import ssl
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from types import TracebackType
from typing import Any

import httpcore
import httpx

from modelkit import __version__
from modelkit.errors import RegistryError
from modelkit.names import ModelName
from modelkit.registry import ollama_key
from modelkit.registry.auth import basic_header, docker_credentials, parse_challenge
from modelkit.store import MEDIA_TYPE_MANIFEST

__all__ = [
    "ACCEPT_MANIFEST",
    "MEDIA_TYPE_OCI_MANIFEST",
    "RegistryClient",
    "base_url",
    "is_loopback_host",
    "repository",
    "summarize_error_body",
]

MEDIA_TYPE_OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
ACCEPT_MANIFEST = f"{MEDIA_TYPE_MANIFEST}, {MEDIA_TYPE_OCI_MANIFEST}"
READ_SIZE = 1 << 20

EventHooks = Mapping[str, list[Callable[..., Any]]]
BytesCallback = Callable[[int], None]


class _BigReadStream(httpcore.NetworkStream):
    """A socket stream that reads up to ``READ_SIZE`` at a time.

    httpcore asks for 64 KiB per read; for blob downloads the per-read overhead then costs about
    half the loopback throughput. Reading more per call is safe: h11 buffers what follows.
    """

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max(max_bytes, READ_SIZE), timeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, timeout)

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        return _BigReadStream(self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _BigReadBackend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend) -> None:
        self._inner = inner

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _BigReadStream(stream)

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        return _BigReadStream(self._inner.connect_unix_socket(path, timeout, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _enable_big_reads(client: httpx.Client) -> None:
    """Give the client's default transport large socket reads, when httpx's internals are the
    expected ones (else nothing changes). Proxy transports from the environment are left
    alone."""
    transport = getattr(client, "_transport", None)
    pool = getattr(transport, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if isinstance(backend, httpcore.NetworkBackend) and not isinstance(backend, _BigReadBackend):
        pool._network_backend = _BigReadBackend(backend)  # type: ignore[union-attr]


def repository(name: ModelName) -> str:
    """``<namespace>/<model>``: the registry repository of a model name."""
    return f"{name.namespace}/{name.model}"


def _hostname(host: str) -> str:
    if host.startswith("["):
        return host[1:].partition("]")[0]
    if host.count(":") == 1:
        return host.partition(":")[0]
    return host


def is_loopback_host(host: str) -> bool:
    """``localhost``, ``127.*`` or ``::1``, with or without a port."""
    h = _hostname(host).lower()
    return h in ("localhost", "::1") or h.startswith("127.")


def base_url(name: ModelName, *, insecure: bool = False) -> str:
    """``https://<host>``, or ``http://<host>`` for loopback hosts or with ``insecure``."""
    plain = insecure or is_loopback_host(name.host)
    if name.scheme.lower() == "http" and not plain:
        raise RegistryError(
            f"insecure protocol http for {name.host}: pass --insecure to use plain HTTP"
        )
    if name.scheme.lower() not in ("http", "https"):
        raise RegistryError(f"unsupported registry scheme {name.scheme!r}")
    return f"{'http' if plain else 'https'}://{name.host}"


def summarize_error_body(body: bytes, limit: int = 300) -> str:
    """The OCI error list as ``CODE: message; …``, else the body text (shortened)."""
    text = body.decode("utf-8", "replace").strip()
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("errors"), list):
        parts = []
        for err in data["errors"]:
            if not isinstance(err, dict):
                continue
            code, message = err.get("code", ""), err.get("message", "")
            parts.append(f"{code}: {message}" if code and message else str(code or message))
        if parts:
            return "; ".join(parts)
    if isinstance(data, dict) and isinstance(data.get("error"), str):
        return str(data["error"])
    if len(text) > limit:
        text = text[:limit] + "…"
    return text


class RegistryClient:
    """A session with one registry host. Use as a context manager (or call :meth:`close`)."""

    def __init__(
        self,
        base: str,
        *,
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
        event_hooks: EventHooks | None = None,
    ) -> None:
        self.base_url = base.rstrip("/")
        self.host = httpx.URL(self.base_url).netloc.decode("ascii")
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout),
            transport=transport,
            event_hooks=dict(event_hooks or {}),
            headers={"User-Agent": f"modelkit/{__version__}"},
        )
        if transport is None:
            _enable_big_reads(self._http)
        self._credentials_loaded = False
        self._credentials: tuple[str, str] | None = None
        self.sign_with_ollama_key = ollama_key.is_ollama_registry(self.host)
        self._authorization: str | None = None

    @classmethod
    def for_name(
        cls,
        name: ModelName,
        *,
        insecure: bool = False,
        transport: httpx.BaseTransport | None = None,
        event_hooks: EventHooks | None = None,
    ) -> RegistryClient:
        return cls(base_url(name, insecure=insecure), transport=transport, event_hooks=event_hooks)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- plumbing ------------------------------------------------------------------------

    @property
    def credentials(self) -> tuple[str, str] | None:
        """``(user, password)`` for this host from ``~/.docker/config.json`` (read once)."""
        if not self._credentials_loaded:
            self._credentials = docker_credentials(self.host)
            self._credentials_loaded = True
        return self._credentials

    def url(self, path: str) -> str:
        return self.base_url + path

    def _error(self, what: str, response: httpx.Response) -> RegistryError:
        try:
            body = response.read()
        except httpx.HTTPError:
            body = b""
        summary = summarize_error_body(body) or response.reason_phrase
        method = response.request.method
        return RegistryError(
            f"{what}: {method} {response.url} answered {response.status_code}: {summary}",
            url=str(response.url),
            status=response.status_code,
        )

    def _authenticate(self, response: httpx.Response) -> bool:
        """Act on a 401's challenge; True when a new Authorization is worth a retry."""
        header = response.headers.get("WWW-Authenticate", "")
        challenge = parse_challenge(header)
        creds = self.credentials
        if challenge.scheme == "basic":
            if creds is None or self._authorization == basic_header(creds):
                return False
            self._authorization = basic_header(creds)
            return True
        if challenge.scheme != "bearer" or "realm" not in challenge.params:
            return False
        params: list[tuple[str, str | int | float | bool | None]] = []
        if "service" in challenge.params:
            params.append(("service", challenge.params["service"]))
        params += [("scope", s) for s in challenge.params.get("scope", "").split() if s]
        headers = {"Authorization": basic_header(creds)} if creds is not None else {}
        realm = challenge.params["realm"]
        if creds is None and self.sign_with_ollama_key:
            realm, params, headers = self._ollama_signed(realm, params)
        try:
            token_response = self._http.get(realm, params=params or None, headers=headers)
        except httpx.HTTPError as exc:
            raise RegistryError(f"token request to {realm} failed: {exc}", url=realm) from exc
        if token_response.status_code >= 400:
            raise self._error("token request", token_response)
        try:
            data = token_response.json()
        except ValueError:
            data = None
        token = None
        if isinstance(data, dict):
            token = data.get("token") or data.get("access_token")
        if not isinstance(token, str) or not token:
            raise RegistryError(
                f"token request: {realm} answered without a token", url=str(token_response.url)
            )
        new = f"Bearer {token}"
        if new == self._authorization:
            return False
        self._authorization = new
        return True

    def _ollama_signed(
        self, realm: str, params: list[tuple[str, str | int | float | bool | None]]
    ) -> tuple[str, list[tuple[str, str | int | float | bool | None]], dict[str, str]]:
        """Ollama's registry wants the token request signed with ~/.ollama/id_ed25519."""
        realm_host = httpx.URL(realm).netloc.decode("ascii")
        if realm_host.split(":")[0] != self.host.split(":")[0]:
            raise RegistryError(
                f'realm host "{realm_host}" does not match original host "{self.host}"', url=realm
            )
        url = ollama_key.signed_token_url(realm, [(k, str(v)) for k, v in params])
        auth = ollama_key.authorization(ollama_key.load_or_create_key(), "GET", url)
        return url, [], {"Authorization": auth}

    def _unauthorized(self, what: str, response: httpx.Response) -> RegistryError:
        err = self._error(what, response)
        hint = (
            f"the credentials for {self.host} in ~/.docker/config.json were refused"
            if self.credentials is not None
            else f"no credentials for {self.host} in ~/.docker/config.json"
        )
        return RegistryError(f"unauthorized: {err} ({hint})", url=err.url, status=401)

    def request(
        self,
        method: str,
        url: str,
        *,
        what: str,
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        content: Callable[[], bytes | Iterator[bytes]] | None = None,
        stream: bool = False,
        follow_redirects: bool = False,
    ) -> httpx.Response:
        """Send a request, answering auth challenges (the body is rebuilt for a retry).

        Returns any response that is not a 401 (the caller judges the status); a 401 that
        authentication cannot fix raises :class:`RegistryError`. With ``stream`` the caller
        must close the response.
        """
        for _attempt in range(3):
            h = dict(headers or {})
            if self._authorization is not None:
                h["Authorization"] = self._authorization
            request = self._http.build_request(
                method, url, headers=h, params=params, content=content() if content else None
            )
            try:
                response = self._http.send(
                    request, stream=stream, follow_redirects=follow_redirects
                )
            except httpx.HTTPError as exc:
                raise RegistryError(f"{what}: {method} {request.url}: {exc}", url=url) from exc
            if response.status_code != 401:
                return response
            try:
                retry = self._authenticate(response)
            except BaseException:
                response.close()
                raise
            if not retry:
                break
            response.close()
        raise self._unauthorized(what, response)

    def _resolve(self, response: httpx.Response, location: str) -> str:
        return str(response.url.join(location))

    # -- manifests -----------------------------------------------------------------------

    def get_manifest(self, repo: str, reference: str) -> tuple[bytes, str]:
        """``(raw bytes, content type)`` of a manifest; 404 → RegistryError."""
        url = self.url(f"/v2/{repo}/manifests/{reference}")
        r = self.request(
            "GET", url, what="pull model manifest", headers={"Accept": ACCEPT_MANIFEST}
        )
        if r.status_code == 404:
            raise RegistryError(
                f"pull model manifest: {repo}:{reference} not found on {self.host}"
                f" ({summarize_error_body(r.content) or 'HTTP 404'})",
                url=url,
                status=404,
            )
        if r.status_code != 200:
            raise self._error("pull model manifest", r)
        return r.content, r.headers.get("Content-Type", "")

    def put_manifest(self, repo: str, reference: str, raw: bytes, media_type: str) -> None:
        url = self.url(f"/v2/{repo}/manifests/{reference}")
        r = self.request(
            "PUT",
            url,
            what="push manifest",
            headers={"Content-Type": media_type},
            content=lambda: raw,
        )
        if r.status_code not in (200, 201, 202):
            raise self._error("push manifest", r)

    # -- blobs -----------------------------------------------------------------------------

    def blob_size(self, repo: str, digest: str) -> int | None:
        """The blob's size when the registry has it in ``repo``, else None (HEAD)."""
        url = self.url(f"/v2/{repo}/blobs/{digest}")
        r = self.request("HEAD", url, what="check blob", follow_redirects=True)
        if r.status_code == 404:
            return None
        if r.status_code != 200:
            raise self._error("check blob", r)
        try:
            return int(r.headers.get("Content-Length", "-1"))
        except ValueError:
            return -1

    @contextmanager
    def open_blob(self, repo: str, digest: str, offset: int = 0) -> Iterator[httpx.Response]:
        """A streamed ``GET`` of a blob (redirects followed), from ``offset`` with ``Range``.

        The response is 200 (whole blob: a registry may ignore ``Range``) or 206.
        """
        url = self.url(f"/v2/{repo}/blobs/{digest}")
        headers = {"Range": f"bytes={offset}-"} if offset > 0 else {}
        r = self.request(
            "GET", url, what="download blob", headers=headers, stream=True, follow_redirects=True
        )
        try:
            if r.status_code not in (200, 206):
                raise self._error(f"download blob {digest}", r)
            yield r
        finally:
            r.close()

    def start_upload(
        self, repo: str, *, mount: str | None = None, mount_from: str | None = None
    ) -> str | None:
        """``POST …/blobs/uploads/``: the upload URL, or None when the mount succeeded (201)."""
        params = {"mount": mount, "from": mount_from} if mount and mount_from else None
        url = self.url(f"/v2/{repo}/blobs/uploads/")
        r = self.request("POST", url, what="start upload", params=params)
        if r.status_code == 201 and params is not None:
            return None
        if r.status_code != 202:
            raise self._error("start upload", r)
        location = r.headers.get("Docker-Upload-Location") or r.headers.get("Location")
        if not location:
            raise RegistryError(f"start upload: {r.url} answered without a Location", url=url)
        return self._resolve(r, location)

    def upload_part(
        self,
        location: str,
        fd: int,
        offset: int,
        length: int,
        on_bytes: BytesCallback | None = None,
    ) -> str:
        """``PATCH`` bytes ``[offset, offset+length)`` of file ``fd``; the next upload URL."""

        def body() -> Iterator[bytes]:
            pos, end = offset, offset + length
            while pos < end:
                chunk = os.pread(fd, min(READ_SIZE * 4, end - pos), pos)
                if not chunk:
                    raise RegistryError(f"upload: the file ended at byte {pos}, expected {end}")
                pos += len(chunk)
                yield chunk
                if on_bytes is not None:
                    on_bytes(len(chunk))

        r = self.request(
            "PATCH",
            location,
            what="upload blob",
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Length": str(length),
                "Content-Range": f"{offset}-{offset + length - 1}",
            },
            content=body,
        )
        if r.status_code not in (202, 204):
            raise self._error("upload blob", r)
        nxt = r.headers.get("Docker-Upload-Location") or r.headers.get("Location") or location
        return self._resolve(r, nxt)

    def finish_upload(self, location: str, digest: str) -> None:
        """``PUT <location>?digest=…`` (merged into any query the location has)."""
        url = httpx.URL(location).copy_merge_params({"digest": digest})
        r = self.request(
            "PUT",
            str(url),
            what="commit upload",
            headers={"Content-Type": "application/octet-stream", "Content-Length": "0"},
        )
        if r.status_code not in (201, 204):
            raise self._error(f"commit upload of {digest}", r)
