from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import CollectorRegistry

from poolwatch import PoolManager


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def manager(registry: CollectorRegistry) -> Iterator[PoolManager]:
    m = PoolManager(registry=registry)
    yield m
    m.shutdown(cancel_futures=True)


@pytest.fixture
def spans() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(spans: InMemorySpanExporter) -> Iterator[TracerProvider]:
    p = TracerProvider()
    p.add_span_processor(SimpleSpanProcessor(spans))
    yield p
    p.shutdown()


@pytest.fixture
def traced(registry: CollectorRegistry, provider: TracerProvider) -> Iterator[PoolManager]:
    m = PoolManager(registry=registry, tracer_provider=provider)
    yield m
    m.shutdown(cancel_futures=True)
