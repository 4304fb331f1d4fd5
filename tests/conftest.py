"""Shared fixtures for dhc's own tests (not the check suites)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
SHARED_FIXTURES = ROOT.parent / "shared" / "fixtures"


@pytest.fixture
def emulator():
    """A fresh Kubernetes API emulator (tests/k8s_emulator.py) serving real HTTP; a test file that needs
    nodes, routes or faults in place from the start defines its own."""
    from k8s_emulator import Emulator

    with Emulator() as api:
        yield api


def bundled_thresholds() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "thresholds.yaml").read_text())


@pytest.fixture
def thresholds_file(tmp_path: Path):
    """Write a variant of the bundled thresholds: pass a function that edits the parsed document."""

    def make(edit=None, name: str = "thresholds.yaml") -> Path:
        document = copy.deepcopy(bundled_thresholds())
        if edit is not None:
            edit(document)
        path = tmp_path / name
        path.write_text(yaml.safe_dump(document, sort_keys=False))
        return path

    return make


@pytest.fixture(scope="session")
def report_schema() -> dict[str, Any]:
    from dhc.report import load_schema

    return load_schema()


@pytest.fixture
def validate_report(report_schema):
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema comes with the test extra")

    def check(path_or_document: Path | dict[str, Any]) -> dict[str, Any]:
        document = path_or_document
        if isinstance(path_or_document, Path):
            document = json.loads(path_or_document.read_text())
        jsonschema.validate(document, report_schema)
        return document

    return check


@pytest.fixture
def moto():
    """moto in server mode on a free loopback port: AWS over real HTTP. Its URL."""
    moto_server = pytest.importorskip("moto.server", reason="moto[server] comes with the test extra")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def fake_aws_credentials(monkeypatch):
    """Credentials and a region for boto3 that reach nothing real; no profile from the machine."""
    for key, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                       ("AWS_DEFAULT_REGION", "us-west-2")):
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
