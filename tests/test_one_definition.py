"""Each choice and each validation is defined once (issue 11): the schema's enums come from the model's
choices, and no module spells a choice, a check-id or an allowed-values message of its own."""

import json
import re
from pathlib import Path

import pytest

from dhc.model.choices import DEFAULT_PROFILE, PROFILES, SUITES
from dhc.report.schema import SCHEMA_PATH, generate

DHC = Path(__file__).resolve().parent.parent / "dhc"


def test_the_schemas_profile_and_suite_enums_are_the_models_choices():
    for schema in (json.loads(SCHEMA_PATH.read_text()), generate()):
        defs = schema["$defs"]
        assert defs["run"]["properties"]["profile"]["enum"] == list(PROFILES)
        assert defs["thresholds_used"]["properties"]["profile"]["enum"] == list(PROFILES)
        assert defs["check_result"]["properties"]["suite"]["enum"] == list(SUITES.values())
    assert DEFAULT_PROFILE in PROFILES


def _sources():
    return {p.relative_to(DHC).as_posix(): p.read_text() for p in DHC.rglob("*.py")}


@pytest.mark.parametrize(("pattern", "home"), [
    (r"""["']quick["']""", "model/choices.py"),  # the default profile and the profiles
    (r"""^STAGES = \(["']""", "model/choices.py"),
    (r"""["']InstanceStress["']""", "model/choices.py"),
    (r"""^PROFILES = """, "model/choices.py"),
    (r"unknown check id", "thresholds/catalogue.py"),
    (r"None, Reboot, Replace", None),  # allowed actions are derived from Action
    (r"unknown key; expected one of", ["runconfig/__init__.py", "thresholds/validate.py"]),  # JSON and YAML
    (r"missing required key", "thresholds/validate.py"),
    (r"unknown profile", None),
    (r"^SCHEMA_PATH = ", "report/schema.py"),
    (r"^ACTIONS = \(['\"]", None),
    (r"^class RunInfo|^def build_report|^def build_document", None),  # a report's run is the model's Run
    (r"Device\(\*\*|Finding\(\*\*", None),  # the model's codec decodes them, nobody by hand
])
def test_one_definition(pattern, home):
    found = sorted(name for name, text in _sources().items()
                   if re.search(pattern, text, re.MULTILINE) and not name.startswith("fleet/"))
    expected = home if isinstance(home, list) else [home] if home else []
    assert found == expected, f"{pattern!r} defined in {found}, expected only in {home}"
