"""Hugging Face safetensors folders converted to GGUF (llama, qwen2, gemma, gemma3), as
Ollama's create does, with the result cached by the inputs' digests under the store."""

from modelkit.build.convert.cached import CONVERTER_VERSION, convert_cached, converted_dir
from modelkit.build.convert.families import FAMILIES
from modelkit.build.convert.files import NO_FILES, Selection, has_safetensors_weights, select_files
from modelkit.build.convert.writer import ConvertProgress, convert

__all__ = [
    "CONVERTER_VERSION",
    "FAMILIES",
    "NO_FILES",
    "ConvertProgress",
    "Selection",
    "convert",
    "convert_cached",
    "converted_dir",
    "has_safetensors_weights",
    "select_files",
]
