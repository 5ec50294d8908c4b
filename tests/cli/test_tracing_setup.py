"""OTLP export set-up from [tracing] and the standard OTEL_* variables."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ParentBased

from poolwatch.config import TracingConfig
from poolwatch.http.otel import build_tracer_provider

ENDPOINT = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}


def test_off_by_default() -> None:
    assert build_tracer_provider(TracingConfig(), env={}) is None


def test_sdk_disabled_wins() -> None:
    config = TracingConfig(enabled=True)
    assert build_tracer_provider(config, env={**ENDPOINT, "OTEL_SDK_DISABLED": "true"}) is None


def test_endpoint_variable_turns_it_on() -> None:
    for env in (
        ENDPOINT,
        {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"},
    ):
        provider = build_tracer_provider(TracingConfig(), env=env)
        try:
            assert isinstance(provider, TracerProvider)
        finally:
            if provider is not None:
                provider.shutdown()


def test_enabled_uses_service_name_and_ratio() -> None:
    provider = build_tracer_provider(
        TracingConfig(enabled=True, service_name="svc", sampling_ratio=0.25), env={}
    )
    assert provider is not None
    try:
        assert provider.resource.attributes["service.name"] == "svc"
        assert isinstance(provider.sampler, ParentBased)
        assert "0.25" in provider.sampler.get_description()
    finally:
        provider.shutdown()


def test_otel_service_name_wins() -> None:
    provider = build_tracer_provider(
        TracingConfig(enabled=True, service_name="svc"), env={"OTEL_SERVICE_NAME": "env-svc"}
    )
    assert provider is not None
    try:
        assert provider.resource.attributes["service.name"] == "env-svc"
    finally:
        provider.shutdown()
