"""Golden files: each generator's output for fixed fake model facts, byte for byte.

Regenerate after an intended change with ``MODELKIT_UPDATE_GOLDEN=1 python -m pytest
tests/deploy/test_golden.py`` and review the diff."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from deploy_helpers import GOLDEN, PINNED, UPDATE_GOLDEN, make_spec

from modelkit.deploy import generate, write_documents

CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "compose": ("compose", {}),
    "compose-replicas": ("compose", {"replicas": 3, "port": 8080, "parallel": 2}),
    "kubernetes-hpa": ("kubernetes", {"image_digest": PINNED, "namespace": "llm"}),
    "kubernetes-keda": (
        "kubernetes",
        {"image_digest": PINNED, "autoscale": "keda", "replicas": 2, "max_replicas": 6},
    ),
    "kubernetes-image-volume": (
        "kubernetes",
        {
            "image": "registry.example.com/modelkit/runtime:0.1@" + PINNED,
            "model_source": "image-volume",
            "model_image": "registry.example.com/models/qwen-demo-weights:1.0",
            "autoscale": "none",
        },
    ),
    "kubernetes-init-1.29": (
        "kubernetes",
        {
            "image": "registry.example.com/modelkit/runtime:0.1",
            "model_source": "init",
            "model_image": "registry.example.com/models/qwen-demo:1.0",
            "kube_version": "1.29",
            "num_ctx": 8192,
            "parallel": 4,
        },
    ),
    "kserve": ("kserve", {"image_digest": PINNED, "autoscale": "keda"}),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case: str, tmp_path: Path) -> None:
    target, options = CASES[case]
    documents = generate(target, make_spec(**options))
    written = write_documents(documents, tmp_path, single_file=None)
    golden_dir = GOLDEN / case
    if UPDATE_GOLDEN:
        golden_dir.mkdir(parents=True, exist_ok=True)
        for old in golden_dir.glob("*.yaml"):
            old.unlink()
        for path in written:
            (golden_dir / path.name).write_text(path.read_text())
    expected = sorted(p.name for p in golden_dir.glob("*.yaml"))
    assert sorted(p.name for p in written) == expected, f"set MODELKIT_UPDATE_GOLDEN=1 ({case})"
    for path in written:
        assert path.read_text() == (golden_dir / path.name).read_text(), path.name
