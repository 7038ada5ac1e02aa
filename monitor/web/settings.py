"""The ``web:`` section: the read-only status page and its JSON API on the metrics port (docs/web.md)."""
from __future__ import annotations

from pydantic import Field, model_validator

from monitor.strict import Strict


class WebConfig(Strict):
    """The ``web:`` section."""

    enabled: bool = Field(True, strict=True, description=(
        "serve the status page (`/`, `/streams/NAME`) and its JSON (`/api/...`) on the metrics port; "
        "`/metrics`, `/healthz` and `/readyz` are served either way"))
    pictures: bool = Field(True, strict=True, description=(
        "serve the snapshots (`/snapshots/...`) and show them on the page; false = page without pictures"))
    username: str | None = Field(None, repr=False, description=(
        "HTTP basic auth user for the page, API and pictures (with `password`); use `${ENV}` for secrets"))
    password: str | None = Field(None, repr=False, description="HTTP basic auth password (with `username`)")
    token: str | None = Field(None, repr=False, description=(
        "bearer token accepted instead of (or besides) basic auth: `Authorization: Bearer TOKEN`. With no "
        "credentials set the page is served only on a loopback `metrics.listen`; elsewhere it answers 403"))
    external_url: str | None = Field(None, description=(
        "the URL under which users reach this page (e.g. behind a proxy), used for links; informative, "
        "alert links are built by Prometheus from its `vqa_web_url` external label (docs/web.md)"))

    @model_validator(mode="after")
    def _pairs(self) -> "WebConfig":
        if (self.username is None) != (self.password is None):
            raise ValueError("username and password go together")
        for key in ("username", "password", "token"):
            if getattr(self, key) == "":
                raise ValueError(f"{key} is empty (an unset ${{ENV}} default?)")
        return self

    @property
    def has_credentials(self) -> bool:
        return self.token is not None or self.username is not None
