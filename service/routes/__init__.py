"""The HTTP API, one router per tag: images (/generate, /sweep), models (/models), operations
(/healthz, /readyz, /metrics)."""
from fastapi import APIRouter

from service.routes import images, models, operations

api_router = APIRouter()
for module in (images, models, operations):
    api_router.include_router(module.router)
