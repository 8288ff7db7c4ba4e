"""Schemathesis against the service's own OpenAPI schema: every route, positive and negative
data, a bounded number of requests. No 5xx, every response as documented, every error in the
one shape `{"error": {"code", "message"}}` (on /v2: the Open Inference Protocol's
`{"error": "..."}`).

Hypothesis runs derandomized (the same cases on every run); the per-operation budgets below
keep the whole run near a minute on two cores.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode, checks
from schemathesis.python import asgi

from service import create_app
from tests.service.conftest import make_settings

pytestmark = pytest.mark.slow

# generated requests per (operation, mode); operations with few possible inputs stop earlier
EXAMPLES = {
    "POST /v1/models/{model}/predict": 450,
    "POST /v1/models/{model}/ood": 300,
    "POST /v1/models/{model}/generate": 300,
    "GET /v1/models/{model}": 200,
    "GET /v1/models": 60,
}
DEFAULT_EXAMPLES = 40
# A safety net for slow machines, shared by the operations in proportion to their examples:
# past its share, an operation's remaining cases are generated but not sent.
TIME_BUDGET_S = 120.0
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


def _error_shape(response: Any, label: str) -> str | None:
    if response.status_code < 400:
        return None
    try:
        body = response.json()
    except ValueError:
        return f"{response.status_code} without a JSON body: {response.text[:200]!r}"
    if label.split(" ")[1].startswith("/v2"):
        v2 = isinstance(body, dict) and set(body) == {"error"} and isinstance(body["error"], str)
        return (
            None if v2 and body["error"] else f"{response.status_code} not the v2 shape: {body!r}"
        )
    ok = (
        isinstance(body, dict)
        and set(body) == {"error"}
        and isinstance(body["error"], dict)
        and set(body["error"]) == {"code", "message"}
        and all(isinstance(v, str) and v for v in body["error"].values())
    )
    return None if ok else f"{response.status_code} error body not in the shape: {body!r}"


def _total_examples(schema: Any) -> int:
    labels = [result.ok().label for result in schema.get_all_operations()]
    return sum(EXAMPLES.get(label, DEFAULT_EXAMPLES) for label in labels)


def _fuzz(
    op: Any,
    mode: GenerationMode,
    client: Any,
    sent: dict[str, int],
    statuses: dict[int, int],
    problems: list[str],
) -> None:
    label = op.label
    n = EXAMPLES.get(label, DEFAULT_EXAMPLES)
    start = time.monotonic()
    share = TIME_BUDGET_S * n / (2 * _total_examples(op.schema))

    @settings(
        max_examples=n,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],
    )
    @given(
        case=op.as_strategy(generation_mode=mode),
        model=st.sampled_from(["served", "served", "plain", None]),
    )
    def fuzz(case: Any, model: str | None) -> None:
        if time.monotonic() - start > share:
            return
        # mostly a served model, so that requests reach the image and JSON parsers
        params = case.path_parameters
        if model is not None and params is not None and "model" in params:
            params["model"] = model
        response = case.call(session=client)
        sent[label] = sent.get(label, 0) + 1
        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        shape = _error_shape(response, label)
        if shape is not None:
            problems.append(f"{label}: {shape}")
        # invalid requests (negative mode) may get any 4xx; valid ones only documented answers
        positive = mode is GenerationMode.POSITIVE
        case.validate_response(response, checks=CHECKS if positive else CHECKS[:1])

    try:
        fuzz()
    except Unsatisfiable:
        # nothing to make invalid: an operation without parameters or body (GET /healthz)
        assert mode is GenerationMode.NEGATIVE, label


def test_schemathesis_every_route(store_root: Path) -> None:
    app = create_app(
        make_settings(
            store_root,
            # small generation limits: fuzzing the shape of answers, not SGLD throughput
            generation_max_steps=5,
            generation_max_samples=2,
            generation_time_budget_s=5.0,
        )
    )
    client = asgi.get_client(app).__enter__()  # starts the app's lifespan (loads the models)
    try:
        deadline = time.monotonic() + 120
        while client.get("http://testserver/readyz").status_code != 200:
            assert time.monotonic() < deadline, "app not ready"
            time.sleep(0.05)
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        sent: dict[str, int] = {}
        statuses: dict[int, int] = {}
        problems: list[str] = []
        start = time.monotonic()
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 8, [op.label for op in operations]
        for op in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                _fuzz(op, mode, client, sent, statuses, problems)
        elapsed = time.monotonic() - start
        total = sum(sent.values())
        print(f"\nschemathesis: {total} requests in {elapsed:.1f} s over {len(sent)} operations")
        print(f"  per operation: {sent}")
        print(f"  statuses: {dict(sorted(statuses.items()))}")
        assert not problems, "\n".join(problems[:20])
        assert all(s < 500 for s in statuses)
        assert len(sent) == len(operations), sent  # every route was reached
        assert total >= 1000, f"only {total} requests fuzzed"
        assert client.get("http://testserver/healthz").status_code == 200
        assert client.get("http://testserver/readyz").status_code == 200
    finally:
        client.__exit__(None, None, None)
        asgi.shutdown_lifespans()
