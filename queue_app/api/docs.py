"""The OpenAPI document and Swagger UI, with Swagger UI's files served from this service.

drf-spectacular's Swagger UI loads its JS and CSS from a CDN by default; serving the
drf-spectacular-sidecar copies ourselves keeps /api/docs/ working offline, and under
daphne with DEBUG off, where no static files are served, too.
"""

from __future__ import annotations

from pathlib import Path

import drf_spectacular_sidecar
from django.http import FileResponse, Http404, HttpRequest
from django.urls import reverse
from drf_spectacular.views import SpectacularSwaggerView

SWAGGER_UI_DIR = (
    Path(drf_spectacular_sidecar.__file__).resolve().parent
    / "static"
    / "drf_spectacular_sidecar"
    / "swagger-ui-dist"
)
# Only the files the page loads: the URL names a file, so it must not name any other.
SWAGGER_UI_FILES = frozenset(
    {
        "swagger-ui.css",
        "swagger-ui-bundle.js",
        "swagger-ui-standalone-preset.js",
        "favicon-32x32.png",
    }
)


class SwaggerDocsView(SpectacularSwaggerView):
    url_name = "api:schema"

    @staticmethod
    def _swagger_ui_resource(filename: str) -> str:
        return reverse("api:docs-asset", args=[filename])

    @staticmethod
    def _swagger_ui_favicon() -> str:
        return reverse("api:docs-asset", args=["favicon-32x32.png"])


def swagger_ui_asset(request: HttpRequest, filename: str) -> FileResponse:
    if filename not in SWAGGER_UI_FILES:
        raise Http404("No such file.")
    response = FileResponse((SWAGGER_UI_DIR / filename).open("rb"))
    # The files change only with the package version.
    response["Cache-Control"] = "public, max-age=86400"
    return response
