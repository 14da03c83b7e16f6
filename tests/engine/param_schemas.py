"""Small stand-ins for drivers' Params models: the engine is validated against what it is given."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, HttpUrl


class HttpRequestParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: HttpUrl
    method: Literal["GET", "POST"] = "GET"
    headers: dict[str, str] = {}
    timeout_s: float = 10.0


class ConditionalParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    condition: str | bool


class WebhookParams(BaseModel):
    url: HttpUrl
    payload: dict[str, object] = {}


PARAM_SCHEMAS: dict[str, type[BaseModel]] = {
    "http_request": HttpRequestParams,
    "conditional": ConditionalParams,
    "webhook": WebhookParams,
}
