"""The pages people open in a browser, and everything they load, served from here (no CDN: they work offline):
the API docs (Swagger UI's assets), the latent explorer, and ONNX Runtime Web, which the explorer runs the
generator with in the page.

ONNX Runtime Web comes from npm at the version that `static/runtime/package-lock.json` pins (with its integrity);
`npm ci --prefix service/api/static/runtime` (done by `make install` and `make test`) puts it in node_modules, and
only the three files the explorer loads are served, under a path naming the version, cached for good. Without
them the explorer draws on the server, as it does for versions without an ONNX form.

The explorer's responses carry COOP/COEP, which make the page cross-origin isolated: that is what lets ONNX Runtime
run on several threads (SharedArrayBuffer). Only the explorer's: the API docs stay as they are."""
from __future__ import annotations

import functools
import json
from pathlib import Path

from fastapi import FastAPI, HTTPException
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"
EXPLORER = STATIC / "explorer"
RUNTIME = STATIC / "runtime"  # package.json and its lock file; npm ci fills node_modules
RUNTIME_PACKAGE = "onnxruntime-web"
RUNTIME_FILES = {  # the WebAssembly build only (SIMD, threads where isolated): what the explorer imports, by type
    "ort.wasm.min.mjs": "text/javascript",
    "ort-wasm-simd-threaded.mjs": "text/javascript",
    "ort-wasm-simd-threaded.wasm": "application/wasm",  # the type streaming compilation needs
}
INSTALL_RUNTIME = "npm ci --prefix service/api/static/runtime"
ISOLATED = {"Cross-Origin-Opener-Policy": "same-origin", "Cross-Origin-Embedder-Policy": "require-corp"}
IMMUTABLE = "public, max-age=31536000, immutable"


def swagger_assets() -> Path:
    import swagger_ui_bundle

    return Path(swagger_ui_bundle.swagger_ui_path)


@functools.cache
def pinned_runtime() -> str:
    """The ONNX Runtime Web version the lock file pins."""
    lock = json.loads((RUNTIME / "package-lock.json").read_text())
    return lock["packages"][f"node_modules/{RUNTIME_PACKAGE}"]["version"]


def installed_runtime() -> Path | None:
    """The folder of the pinned ONNX Runtime Web's files, when npm installed that version; else None."""
    package = RUNTIME / "node_modules" / RUNTIME_PACKAGE
    try:
        installed = json.loads((package / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None
    dist = package / "dist"
    if installed != pinned_runtime() or not all((dist / name).is_file() for name in RUNTIME_FILES):
        return None
    return dist


class IsolatedFiles(StaticFiles):
    """Static files with the explorer's cross-origin isolation headers."""

    def file_response(self, *args, **kwargs):
        response = super().file_response(*args, **kwargs)
        response.headers.update(ISOLATED)
        return response


def add_pages(app: FastAPI) -> None:
    """The API docs at /docs, the explorer at / and /explore, their files, and the in-page runtime's."""
    # FastAPI's default /docs loads Swagger UI from a CDN and is blank offline: serve the assets ourselves
    app.mount("/static/swagger", StaticFiles(directory=swagger_assets()), name="swagger")

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url, title="latentlab API",
                                   swagger_js_url="/static/swagger/swagger-ui-bundle.js",
                                   swagger_css_url="/static/swagger/swagger-ui.css",
                                   swagger_favicon_url="/static/swagger/favicon-32x32.png")

    @app.get("/static/runtime/runtime.json", include_in_schema=False)
    async def runtime() -> JSONResponse:
        """What the explorer asks first: whether it can draw in the page, and where the runtime's files are."""
        version = pinned_runtime()
        return JSONResponse({"package": RUNTIME_PACKAGE, "version": version,
                             "installed": installed_runtime() is not None, "base": f"/static/runtime/{version}/",
                             "install": INSTALL_RUNTIME},
                            headers={"Cache-Control": "no-cache", **ISOLATED})

    @app.get("/static/runtime/{version}/{file}", include_in_schema=False)
    async def runtime_file(version: str, file: str) -> FileResponse:
        dist = installed_runtime()
        if version != pinned_runtime() or file not in RUNTIME_FILES:
            raise HTTPException(404, detail=f"this service serves {RUNTIME_PACKAGE} {pinned_runtime()}'s "
                                            f"{', '.join(RUNTIME_FILES)}")
        if dist is None:
            raise HTTPException(404, detail=f"{RUNTIME_PACKAGE} is not installed: run {INSTALL_RUNTIME}")
        # the version is in the path and its files never change: cached for good
        return FileResponse(dist / file, media_type=RUNTIME_FILES[file],
                            headers={"Cache-Control": IMMUTABLE, **ISOLATED})

    app.mount("/static/explorer", IsolatedFiles(directory=EXPLORER), name="explorer")

    @app.get("/favicon.ico", include_in_schema=False)  # browsers ask for it on every page, /docs included
    async def favicon() -> FileResponse:
        return FileResponse(EXPLORER / "favicon.svg", media_type="image/svg+xml",
                            headers={"Cache-Control": "public, max-age=86400"})

    @app.get("/", include_in_schema=False)
    @app.get("/explore", include_in_schema=False)
    async def explorer() -> FileResponse:
        return FileResponse(EXPLORER / "index.html", headers=ISOLATED)
