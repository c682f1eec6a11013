"""Every ``MLOOP_*`` environment variable, read in one place (pydantic-settings).

``settings()`` reads the environment when called, so a process that changes it
(the tests, ``mloop serve`` starting a server) sees the change. A wrong value
fails with the variable's name. Empty or blank values count as unset.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, PositiveInt, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MLOOP_", extra="ignore", frozen=True)

    workspace: Path = Path(".")  # the folder of params.yaml and the loop's files
    verbose: bool = False  # the libraries' own INFO logs
    # Serving
    inference_log: str | None = None  # SQLite file of served predictions; "off": none
    log_inputs: bool = True  # keep each request's inputs in the log (mloop harvest needs them)
    api_token: str | None = None  # bearer token for every endpoint but the probes
    metrics_token: str | None = None  # bearer token that may read /metrics only
    # POST /feedback wants a labeller's token (components/core/credentials.py): the
    # workspace's file {name: token} (mloop serve writes it), and/or one token here
    labeller_tokens: Path | None = None
    labeller_token: str | None = None
    # Host names the service answers besides loopback names and its bound address
    # (comma-separated; "*" for any): a page on another name (DNS rebinding) gets 421
    allowed_hosts: str = ""
    max_body_bytes: PositiveInt | None = None  # default: the largest legal batch
    service_workers: PositiveInt = 2  # Bento server worker processes
    ort_threads: PositiveInt = 1  # intra-op threads per server worker (ONNX Runtime, torch)
    max_in_flight: PositiveInt = 64  # requests per worker at once; beyond: 503, Retry-After
    max_file_bytes: PositiveInt = 10 * 2**20  # an uploaded image file; beyond: 413
    max_image_pixels: PositiveInt = 25_000_000  # an uploaded image's width x height; beyond: 422
    max_request_pixels: PositiveInt = 50_000_000  # all images of one upload request; beyond: 413
    # POST /explain: explanations per second per worker, a burst of as many (beyond: 429)
    explain_rate: float = Field(10.0, gt=0, le=10_000)
    explain_max_batch: PositiveInt = 16  # POST /explain: inputs per request (beyond: 413)
    explain_max_tokens: PositiveInt = 2048  # POST /explain: tokens of its texts (beyond: 413)
    # POST /explain runs under a CPU budget of its own per worker (components/package/
    # budget.py): at most this share of a core over time, at most this many CPU-seconds
    # admitted ahead (beyond: 503 with Retry-After), in a child process this much nicer
    explain_cpu_share: float = Field(0.25, gt=0, le=64)
    explain_queue_s: float = Field(2.0, gt=0, le=3600)
    explain_nice: int = Field(10, ge=0, le=19)
    tracing: bool = False  # BentoML's OpenTelemetry spans (configure an exporter for them)
    access_log: bool = False  # BentoML's access log
    bento_model: str | None = None  # the BentoML model tag to serve (set by the build)
    # mloop serve: the file naming the model to serve; each worker follows it, and swaps
    # in a new version without a dropped request (components/package/served_model.py)
    model_pointer: Path | None = None
    # Registry and orchestration
    registry_lock: Path | None = None  # gate-decision lock file (default: beside the store)
    dask_address: str | None = None  # a running Dask scheduler for sweeps and run-many
    work_pool: str | None = None  # `mloop deploy` registers on this Prefect work pool

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_unset(cls, value, info):
        if isinstance(value, str) and not value.strip():
            return cls.model_fields[info.field_name].default
        return value.strip() if isinstance(value, str) else value


def settings() -> Settings:
    """The ``MLOOP_*`` settings as the environment holds them now."""
    return Settings()
