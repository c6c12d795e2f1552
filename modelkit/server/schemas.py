"""Request bodies of the model-management routes (pydantic; unknown fields ignored)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, model_validator


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")


class ModelRequest(_Request):
    """A body naming one model: ``model``, or the deprecated alias ``name``."""

    model: str = ""
    name: str = ""

    @model_validator(mode="after")
    def _alias(self) -> ModelRequest:
        if not self.model:
            self.model = self.name
        return self


class ShowRequest(ModelRequest):
    verbose: bool = False
    system: str = ""


class CopyRequest(_Request):
    source: str = ""
    destination: str = ""
