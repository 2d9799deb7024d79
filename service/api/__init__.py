"""The service's HTTP side: the FastAPI app and everything that speaks HTTP.

`app` builds the application (lifespan, middleware, offline docs, the explorer page); `settings` reads the
environment; `routes/` holds one router per resource; `schemas` the request and response models; `ceilings`
the schema's hard bounds and `limits` the checks against the operator's settings; `deps` what routes receive;
`auth` API keys; `errors` the documented error shape; `middleware` metrics and the body limit; `lane` the image
routes' lean path; `protocol` uvicorn's C HTTP protocol with gathered writes; `telemetry` Prometheus; `drain`
what SIGTERM means (graceful drain). It uses `service.operations` and `service.engine`; neither uses it
(import-linter contracts in pyproject.toml).
"""
