"""Probes and metrics: liveness, readiness (which a draining replica answers with 503) and Prometheus."""
from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST

from service.api.deps import ServicesDep, TelemetryDep, not_ready_detail

probes = APIRouter(tags=["operations"])
metrics = APIRouter(tags=["operations"])


@probes.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@probes.get("/readyz", summary="Readiness: a model is loaded and warmed up, and the replica is not draining",
            responses={503: {"description": "not ready (starting, no model, or draining after SIGTERM); `detail` says why"}})
async def readyz(services: ServicesDep) -> JSONResponse:
    registry = services.registry
    if services.drain.draining:
        return JSONResponse({"detail": services.drain.detail()}, status_code=503)
    if not registry.ready:
        return JSONResponse({"detail": not_ready_detail(registry)}, status_code=503)
    serving = {name: m.version for name, m in registry.serving().items()}
    return JSONResponse({"status": "ready", "device": str(registry.device), "serving": serving})


@metrics.get("/metrics", summary="Prometheus metrics", response_class=Response, name="metrics",
             responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                                  "description": "Prometheus text exposition format"}})
async def prometheus_metrics(telemetry: TelemetryDep) -> Response:
    return Response(telemetry.render(), media_type=CONTENT_TYPE_LATEST)
