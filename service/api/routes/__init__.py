"""The HTTP API, one router per tag: images (/generate, /sweep, /interpolate), models (/models, their
directions, classes and files), latents (/latents), discriminator (/score), projection (/project), probes
(/healthz, /readyz), /metrics, and the Open Inference Protocol (/v2). With API keys configured, all but the
probes (the protocol's health routes included) need one."""
from fastapi import APIRouter, Depends

from service.api import protocol_errors
from service.api.auth import require_api_key
from service.api.error_responses import error_responses
from service.api.routes import files, images, inference, latents, models, probes, project, score


def api_router(keys_required: bool, metrics_public: bool) -> APIRouter:
    guarded = {"dependencies": [Depends(require_api_key)], "responses": error_responses(401)} if keys_required else {}
    router = APIRouter()
    router.include_router(images.router, **guarded)
    router.include_router(models.router, **guarded)
    router.include_router(files.router, **guarded)
    router.include_router(latents.router, **guarded)
    router.include_router(score.router, **guarded)
    router.include_router(project.router, **guarded)
    router.include_router(inference.router, **{**guarded, "responses": protocol_errors.KEY_REQUIRED} if keys_required else {})
    router.include_router(probes.probes)  # liveness and readiness probes carry no key
    router.include_router(inference.probes)
    router.include_router(probes.metrics, **({} if metrics_public else guarded))
    return router
