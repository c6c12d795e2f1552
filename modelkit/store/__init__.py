"""The Ollama-format model store: content-addressed blobs, manifests, config blobs.

Public API (import from ``modelkit.store``):

- :class:`Store` / :class:`StoredManifest` — the store at ``$OLLAMA_MODELS``;
- :class:`BlobRef`, :class:`BlobStore` — blob files and atomic writes;
- :class:`Manifest`, :class:`Descriptor`, ``MEDIA_TYPE_*`` — manifest JSON;
- :class:`ModelConfig` — the config blob;
- :class:`ModelView`, :func:`view_model`, :func:`view_stored` — a model read back by layer;
- :func:`read_gguf_info`, :class:`GGUFInfo`, :func:`human_parameter_count`, :func:`is_gguf`;
- :func:`go_json_dumps`, :class:`GoFloat32` — Go ``encoding/json`` bytes;
- digest helpers (:func:`normalize_digest`, :func:`is_valid_digest`, ...).
"""

from modelkit.store.blobs import (
    TEMP_PREFIX,
    BlobRef,
    BlobStore,
    ProgressCallback,
    create_locked_temp,
    remove_stale_temps,
)
from modelkit.store.config import ModelConfig
from modelkit.store.digest import (
    DIGEST_RE,
    blob_filename,
    digest_from_filename,
    file_sha256,
    is_valid_digest,
    normalize_digest,
    sha256_digest,
    sha256_hex,
)
from modelkit.store.ggufinfo import (
    FILE_TYPE_NAMES,
    GGUFInfo,
    GGUFValue,
    TensorInfo,
    file_type_name,
    human_parameter_count,
    is_gguf,
    read_gguf_info,
)
from modelkit.store.gojson import GoFloat32, GoJSONError, go_json_dumps, go_json_string
from modelkit.store.manifest import (
    ALL_LAYER_MEDIA_TYPES,
    MEDIA_TYPE_ADAPTER,
    MEDIA_TYPE_CONFIG,
    MEDIA_TYPE_DRAFT,
    MEDIA_TYPE_EMBED,
    MEDIA_TYPE_JSON,
    MEDIA_TYPE_LICENSE,
    MEDIA_TYPE_MANIFEST,
    MEDIA_TYPE_MESSAGES,
    MEDIA_TYPE_MODEL,
    MEDIA_TYPE_PARAMS,
    MEDIA_TYPE_PROJECTOR,
    MEDIA_TYPE_PROMPT,
    MEDIA_TYPE_SYSTEM,
    MEDIA_TYPE_TEMPLATE,
    MEDIA_TYPE_TENSOR,
    WEIGHT_MEDIA_TYPES,
    Descriptor,
    Manifest,
    manifest_digest,
)
from modelkit.store.store import Store, StoredManifest
from modelkit.store.view import ModelView, view_model, view_stored

__all__ = [
    "ALL_LAYER_MEDIA_TYPES",
    "DIGEST_RE",
    "FILE_TYPE_NAMES",
    "MEDIA_TYPE_ADAPTER",
    "MEDIA_TYPE_CONFIG",
    "MEDIA_TYPE_DRAFT",
    "MEDIA_TYPE_EMBED",
    "MEDIA_TYPE_JSON",
    "MEDIA_TYPE_LICENSE",
    "MEDIA_TYPE_MANIFEST",
    "MEDIA_TYPE_MESSAGES",
    "MEDIA_TYPE_MODEL",
    "MEDIA_TYPE_PARAMS",
    "MEDIA_TYPE_PROJECTOR",
    "MEDIA_TYPE_PROMPT",
    "MEDIA_TYPE_SYSTEM",
    "MEDIA_TYPE_TEMPLATE",
    "MEDIA_TYPE_TENSOR",
    "TEMP_PREFIX",
    "WEIGHT_MEDIA_TYPES",
    "BlobRef",
    "BlobStore",
    "Descriptor",
    "GGUFInfo",
    "GGUFValue",
    "GoFloat32",
    "GoJSONError",
    "Manifest",
    "ModelConfig",
    "ModelView",
    "ProgressCallback",
    "Store",
    "StoredManifest",
    "TensorInfo",
    "blob_filename",
    "create_locked_temp",
    "digest_from_filename",
    "file_sha256",
    "file_type_name",
    "go_json_dumps",
    "go_json_string",
    "human_parameter_count",
    "is_gguf",
    "is_valid_digest",
    "manifest_digest",
    "normalize_digest",
    "read_gguf_info",
    "remove_stale_temps",
    "sha256_digest",
    "sha256_hex",
    "view_model",
    "view_stored",
]
