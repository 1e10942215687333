"""The OpenAPI document: valid, complete, and true of the running service (schemathesis)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from openapi_spec_validator import validate

from api import create_app
from api.openapi import document
from inkq.settings import Settings
from tests.conftest import extra_api

#: What schemathesis checks: no 5xx, and every status code, content type, header
#: and body as the document says. Left out on purpose: "positive data acceptance"
#: (a schema-valid string is not necessarily a decodable PNG: the API answers it
#: with a documented 422 or item error) and "use after free" (DELETE cancels a job,
#: whose record stays readable until it expires, as documented).
CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,"
          "response_headers_conformance,response_schema_conformance")


def test_document_is_valid_openapi_31():
    spec = document()
    assert spec["openapi"] == "3.1.0"
    validate(spec)


def test_every_route_is_documented(redis_server):
    app = create_app(Settings.from_env({}, redis_url=redis_server.url))
    documented = {(path, method.upper()) for path, ops in document()["paths"].items() for method in ops}
    for rule in app.url_map.iter_rules():
        if rule.endpoint in ("static", "page.index", "docs.openapi", "docs.docs"):
            continue
        path = rule.rule.replace("<", "{").replace(">", "}")
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert (path, method) in documented, f"{method} {path} is missing from the OpenAPI document"


def test_docs_page_is_served_without_a_cdn(live_service):
    page = httpx.get(f"{live_service.url}/docs")
    assert page.status_code == 200 and "openapi.json" in page.text
    assert "http://" not in page.text and "https://" not in page.text
    assert httpx.get(f"{live_service.url}/openapi.json").json() == document()


@pytest.fixture(scope="module")
def unlimited_api(live_service):
    """The API without a rate limit, on the live service's Redis and workers."""
    with extra_api(live_service, "api-schemathesis", {"INKQ_RATE_LIMIT_PER_MIN": "0"}) as url:
        yield url


def test_schemathesis_finds_no_5xx_and_no_schema_violation(unlimited_api, tmp_path):
    cli = Path(sys.executable).with_name("schemathesis")
    out = subprocess.run(
        [str(cli), "run", f"{unlimited_api}/openapi.json", "--checks", CHECKS,
         "--max-examples", "25", "--max-time", "60", "--generation-deterministic",
         "--request-timeout", "15", "--report", "junit", "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=240)
    summary = out.stdout[out.stdout.find("SUMMARY"):] if "SUMMARY" in out.stdout else out.stdout[-3000:]
    print(summary)
    assert out.returncode == 0, out.stdout[-6000:] + out.stderr[-2000:]
    assert "Tested: 9" in out.stdout
