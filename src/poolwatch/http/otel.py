"""OpenTelemetry for the service: a server span per request, and OTLP export set-up.

The middleware makes each request's span current while the handler runs, so a task
submitted by that handler gets the request span as its parent.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import propagate, trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind, Status, StatusCode
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from poolwatch._version import __version__
from poolwatch.tracing import records_spans

if TYPE_CHECKING:
    from poolwatch.config import TracingConfig

__all__ = ["ServerSpanMiddleware", "build_tracer_provider", "otlp_endpoint_configured"]


class ServerSpanMiddleware:
    """One SERVER span per HTTP request, named ``METHOD /route/{template}``.

    ``route_templates`` maps an endpoint (as Starlette stores it in ``scope["endpoint"]``
    after routing) to its path template, which keeps span names low-cardinality.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        route_templates: Mapping[Any, str] | None = None,
    ) -> None:
        self.app = app
        self.provider = tracer_provider
        self.tracer = trace.get_tracer("poolwatch.http", tracer_provider=tracer_provider)
        self.route_templates = dict(route_templates or {})

    def _tracing_off(self) -> bool:
        """No provider that records: the given one is a no-op, or none was given and no
        SDK provider is installed globally (yet: it is looked up on every request)."""
        provider = self.provider if self.provider is not None else trace.get_tracer_provider()
        return not records_spans(provider)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self._tracing_off():
            # Without tracing a span would record nothing, and tasks record no parent.
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        parent = propagate.extract(carrier)
        attributes = {
            "http.request.method": method,
            "url.path": scope["path"],
            "url.scheme": scope.get("scheme", "http"),
        }
        with self.tracer.start_as_current_span(
            method,
            context=parent,
            kind=SpanKind.SERVER,
            attributes=attributes,
            record_exception=True,
            set_status_on_exception=True,
        ) as span:
            recording = span.is_recording()

            async def traced_send(message: Message) -> None:
                if recording and message["type"] == "http.response.start":
                    status = int(message["status"])
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        span.set_status(Status(StatusCode.ERROR))
                await send(message)

            try:
                await self.app(scope, receive, traced_send)
            finally:
                if recording:
                    template = self.route_templates.get(scope.get("endpoint"))
                    if template is not None:
                        span.set_attribute("http.route", template)
                        span.update_name(f"{method} {template}")


def otlp_endpoint_configured(env: Mapping[str, str]) -> bool:
    return bool(
        env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def build_tracer_provider(
    config: TracingConfig, env: Mapping[str, str] | None = None
) -> TracerProvider | None:
    """An SDK provider exporting over OTLP/HTTP, or ``None`` when tracing is off.

    Tracing is on when ``[tracing] enabled`` is true or an OTLP endpoint is set in the
    standard ``OTEL_EXPORTER_OTLP_*`` variables (which also configure the exporter);
    ``OTEL_SDK_DISABLED=true`` turns it off. ``OTEL_SERVICE_NAME`` overrides the
    configured service name.
    """
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if not (config.enabled or otlp_endpoint_configured(env)):
        return None
    service_name = env.get("OTEL_SERVICE_NAME") or config.service_name
    resource = Resource.create({"service.name": service_name, "service.version": __version__})
    provider = TracerProvider(
        resource=resource, sampler=ParentBased(TraceIdRatioBased(config.sampling_ratio))
    )
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider
