"""/models/{name}/versions/{version}/files/{file}: a version's files as the store holds them, for clients that run
its networks themselves (the ONNX generator in a browser, an export program on a phone).

A published file never changes under its version (the store refuses to replace a network), so its sha256 is a
strong ETag and it may be cached for good: a client fetches it once per version and revalidates for free."""
from __future__ import annotations

import anyio
from fastapi import APIRouter, HTTPException, Path, Request, Response
from fastapi.responses import FileResponse

from service.api.deps import RegistryDep
from service.api.error_responses import error_responses
from shared.store import NAME_PATTERN

router = APIRouter(tags=["models"])

IMMUTABLE = "public, max-age=31536000, immutable"
MEDIA_TYPES = {".onnx": "application/octet-stream", ".pt": "application/octet-stream",
               ".pt2": "application/octet-stream", ".json": "application/json", ".png": "image/png",
               ".csv": "text/csv"}
FILE_RESPONSE = {
    200: {"content": {media: {"schema": {"type": "string", "format": "binary"}} for media in sorted(set(MEDIA_TYPES.values()))},
          "description": "the file, byte for byte as its manifest lists it, with its sha256 as a strong ETag"},
    304: {"description": "the file has not changed: it never does under a version (If-None-Match matched its ETag)"},
    **error_responses(404, 422),
}


@router.get("/models/{name}/versions/{version}/files/{file:path}", response_class=Response, responses=FILE_RESPONSE,
            summary="One file of a version (its ONNX generator, for instance), cacheable for good")
async def version_file(request: Request, registry: RegistryDep,
                       name: str = Path(pattern=NAME_PATTERN, description="a model of the store", examples=["dcgan"]),
                       version: int = Path(ge=1, description="one of its versions", examples=[1]),
                       file: str = Path(description="a file its manifest lists", examples=["generator.onnx"])
                       ) -> Response:
    """Any file the version's manifest lists (`GET /models/{name}` shows them, with their sizes and hashes), as
    verified when the store was last read. The ETag is the file's sha256: send it back as `If-None-Match` and a
    304 answers without the body."""
    stored = await anyio.to_thread.run_sync(registry.stored, name, version)  # NotFound: a 404
    entry = stored.manifest.files.get(file)
    if entry is None:
        raise HTTPException(404, detail=f"{name} v{version} has no file {file!r}; it has "
                                        f"{', '.join(sorted(stored.manifest.files))}")
    headers = {"ETag": f'"{entry.sha256}"', "Cache-Control": IMMUTABLE}
    if headers["ETag"] in [tag.strip() for tag in request.headers.get("if-none-match", "").split(",")]:
        return Response(status_code=304, headers=headers)
    suffix = "." + file.rsplit(".", 1)[-1] if "." in file else ""
    # only a file the manifest lists, by its listed name: no path from the request reaches the filesystem
    return FileResponse(stored.path / file, media_type=MEDIA_TYPES.get(suffix, "application/octet-stream"),
                        headers=headers)
