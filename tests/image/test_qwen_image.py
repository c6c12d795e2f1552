"""The real Qwen2.5-Coder-0.5B model as a container image (the example Modelfile, built with
`modelkit build --image --load-image` on the runtime image) answers a question through the
official `openai` client."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import openai
from test_docker_e2e import start

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_qwen_image_answers_paris(
    qwen_gguf: Path,
    runtime_image: Any,
    docker_client: Any,
    made: dict[str, list[Any]],
    tmp_path: Path,
) -> None:
    # The example Modelfile, its FROM pointing at the cached GGUF.
    (tmp_path / "models").mkdir()
    os.symlink(qwen_gguf, tmp_path / "models" / qwen_gguf.name)
    shutil.copy(EXAMPLES / "Modelfile", tmp_path / "Modelfile")
    tag = f"modelkit-e2e-qwen:{uuid.uuid4().hex[:10]}"
    made["images"].append(tag)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OLLAMA_", "MODELKIT_"))}
    env["OLLAMA_MODELS"] = str(tmp_path / "store")
    cmd = [sys.executable, "-m", "modelkit", "build", "--quiet", "-f", str(tmp_path / "Modelfile")]
    cmd += ["-t", "qwen", "--no-check", "--image", tag]
    cmd += ["--runtime", f"docker-daemon:{runtime_image.tag}", "--load-image"]
    started = time.monotonic()
    built = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert built.returncode == 0, built.stderr
    print(f"\nQwen image built and loaded in {time.monotonic() - started:.1f}s")
    running = start(docker_client, tag, made, env={"MODELKIT_PRELOAD": "qwen"})
    client = openai.OpenAI(base_url=f"{running.url}/v1", api_key="unused", timeout=120)
    answer = client.chat.completions.create(
        model="qwen",
        messages=[{"role": "user", "content": "What is the capital of France? One word."}],
        temperature=0,
        max_tokens=10,
    )
    assert "Paris" in (answer.choices[0].message.content or "")
    with contextlib.suppress(Exception):
        running.container.stop(timeout=10)
