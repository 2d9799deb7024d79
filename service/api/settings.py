"""Service settings, read from environment variables (pydantic-settings)."""
from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from service.api.ceilings import IMAGES_CEILING, PROJECT_STEPS_CEILING, SCALE_CEILING
from shared.imaging.devices import DEVICE_PATTERN
from shared.imaging.precision import AUTO, CHOICES


class Settings(BaseSettings):
    """Every field is an environment variable of the same name in upper case (MODEL_DIR, DEVICE, ...)."""

    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    model_dir: Path = Field(Path("./models"), description="the model store to serve")
    device: str = Field("auto", pattern=DEVICE_PATTERN, description="auto (CUDA when available), cpu, cuda, cuda:N")
    host: str = Field("127.0.0.1", description="address to listen on (0.0.0.0 for every interface)")
    port: int = Field(8000, ge=1, le=65535, description="port to listen on")
    reload_interval: float = Field(5.0, gt=0, description="seconds between looks for new versions")
    max_images: int = Field(256, ge=1, le=IMAGES_CEILING, description="most images in one response (count, latents, sweep cells)")
    max_scale: int = Field(16, ge=1, le=SCALE_CEILING, description="largest integer upscaling factor")
    max_pixels: int = Field(4096 * 4096, ge=1, description="largest PNG, in pixels (width x height)")
    max_body_bytes: int = Field(1 << 20, ge=1024, description="largest request body; more gets 413")
    pinned_cache_size: int = Field(4, ge=0, description="older pinned versions kept loaded (LRU) per service")
    max_batch_latents: int = Field(256, ge=1, le=IMAGES_CEILING,
                                   description="most latents in one batched forward (requests are split above it)")
    max_batch_wait_ms: float = Field(2.0, ge=0, le=1000,
                                     description="how long a busy batcher waits to fill a batch (never when idle)")
    max_queued_latents: int = Field(2048, ge=1, description="latents waiting in all queues (the memory cap); more get 503")
    max_queue_delay_ms: float = Field(1000.0, gt=0, le=600_000,
                                      description="a request predicted to be done later than this after it arrives "
                                                  "gets 503 + Retry-After at once; one still waiting then is dropped")
    cuda_graphs: bool = Field(True, description="on CUDA, replay the generator as CUDA graphs per batch-size bucket")
    precision: str = Field(AUTO, pattern=f"^({'|'.join(CHOICES)})$",
                           description="what generators compute in: fp32 (the trainer's pixels exactly), bf16 "
                                       "(autocast), or auto: bf16 where the device has it natively (AMX or "
                                       "AVX512-BF16, CUDA 8.0+) and the warm-up measures it faster, else fp32")
    runtime: str = Field(AUTO, pattern=r"^(auto|torchscript|export|onnxruntime|openvino)$",
                         description="what runs generators: torchscript, export (the torch.export program), "
                                     "onnxruntime or openvino (the ONNX file; extras onnx and openvino), or auto: "
                                     "every one installed, measured at warm-up for each batch size, the fastest "
                                     "whose pixels stay within the bf16 bound of fp32's serving that size")
    max_project_steps: int = Field(500, ge=0, le=PROJECT_STEPS_CEILING,
                                   description="most optimisation steps one POST /project may ask for")
    max_projections: int = Field(4, ge=1, description="projections in progress at once; more get 503 + Retry-After")
    workers: int = Field(1, ge=1, le=64, description="uvicorn worker processes, each with its own models and batcher")
    inference_threads: int = Field(4, ge=1, description="large grids assembled and PNG-encoded at once, off the event loop")
    warmup_batch: int = Field(8, ge=1, description="batch run through a model before it counts as ready")
    api_keys: SecretStr = Field(SecretStr(""), description="comma-separated API keys; when set (or API_KEYS_FILE), "
                                                          "requests need `Authorization: Bearer <key>`")
    api_keys_file: Path | None = Field(None, description="file of API keys, one per line (# comments), e.g. a secret")
    metrics_public: bool = Field(False, description="serve /metrics without a key even when keys are set")
    log_level: str = Field("info", description="debug, info, warning or error")
    drain_timeout_s: float = Field(30.0, gt=0, le=3600, description="on SIGTERM, the most seconds spent finishing "
                                   "the requests in flight before stopping (the container's stop grace period must "
                                   "be longer)")
    drain_notice_s: float = Field(5.0, ge=0, le=600, description="on SIGTERM, the seconds the replica keeps serving "
                                  "new requests while not ready, so that balancers stop sending before it refuses "
                                  "any (HAProxy's check here: 0.5 s; Kubernetes' endpoint updates: a few seconds)")

    @field_validator("api_keys_file", mode="before")
    @classmethod
    def _empty_is_unset(cls, value):
        return None if value == "" else value  # compose passes API_KEYS_FILE= when it is not set

    @model_validator(mode="after")
    def _notice_within_the_drain(self):
        if self.drain_notice_s >= self.drain_timeout_s:
            raise ValueError(f"DRAIN_NOTICE_S ({self.drain_notice_s:g}) must be shorter than DRAIN_TIMEOUT_S "
                             f"({self.drain_timeout_s:g}): the replica serves through the notice, then drains")
        return self

    @model_validator(mode="after")
    def _runtime_installed(self):
        if self.runtime != AUTO:
            from service.engine.runtimes import unavailable  # imports torch: only when a runtime is named

            why = unavailable(self.runtime)
            if why is not None:
                raise ValueError(f"RUNTIME={self.runtime} cannot be used: {why}; or set RUNTIME=auto")
        return self

    @model_validator(mode="after")
    def _queue_holds_a_full_request(self):
        if self.max_queued_latents < self.max_images:
            raise ValueError(f"MAX_QUEUED_LATENTS ({self.max_queued_latents}) must be at least MAX_IMAGES "
                             f"({self.max_images}), or the largest request could never be served")
        return self
