"""Fleet rows (``fleet-row.json``): the review reads them instead of report.json and gets the same numbers;
a missing, stale or corrupt row makes it read report.json, and says so. Also: the device label is the
model's, and the fast decoder's shapes cannot drift from the report model."""

import json
import os
import random
import shutil
from pathlib import Path

import pytest

pd = pytest.importorskip("pandas", reason="the fleet review needs pandas (dhc[fleet])")
msgspec = pytest.importorskip("msgspec", reason="the fast reader comes with dhc[fleet]")

import fleetgen  # noqa: E402

from dhc import fleet  # noqa: E402
from dhc.fleet import read, shapes  # noqa: E402
from dhc.model import Comparison, Device, Limit, Measurement  # noqa: E402
from dhc.model.report import Report  # noqa: E402
from dhc.report import fleetrow, load_schema, save_report  # noqa: E402

PLAN = {"failed": {3, 17}, "incomplete": {5}, "suspects": {11: 6}}


def _same(document):
    """The review without what differs by where and how it was read (the folder, the time, read_from)."""
    drop = ("generated_at", "read_from")
    text = json.dumps({k: v for k, v in document.items() if k not in drop}, sort_keys=True)
    return json.loads(text.replace("/with-rows/", "/X/").replace("/without/", "/X/"))


@pytest.fixture(scope="module")
def twins(tmp_path_factory):
    """The same 40 nodes twice: with their rows, and as runs before rows left them."""
    root = tmp_path_factory.mktemp("twins")
    fleetgen.write_fleet(root / "with-rows", 40, **PLAN)
    fleetgen.write_fleet(root / "without", 40, rows=False, **PLAN)
    return root / "with-rows", root / "without"


def test_rows_and_reports_give_the_same_review(twins):
    rows, reports = (fleet.review([folder])[0] for folder in twins)
    assert rows["read_from"] == {"fleet_rows": 40, "report_json": 0, "why_report_json": {}, "row_problems": []}
    assert reports["read_from"] == {"fleet_rows": 0, "report_json": 40, "why_report_json": {"missing": 40},
                                    "row_problems": []}
    assert _same(rows) == _same(reports)
    assert rows["counts"]["by_status"] == {"Passed": 37, "Failed": 2, "Incomplete": 1}
    [suspect] = rows["outliers"]
    assert (suspect["device"], suspect["metric"], suspect["value"]) == ("GPU 6", "tflops_bf16", 712.0)


def test_rows_and_reports_give_the_same_measurements(twins):
    def table(folder):
        m = fleet.load([folder], workers=1).measurements()
        return m.sort_values(list(m.columns)).reset_index(drop=True)
    pd.testing.assert_frame_equal(*(table(folder) for folder in twins))


def test_fleetgen_writes_rows_only_when_asked(twins):
    with_rows, without = twins
    assert len(list(with_rows.glob("*/fleet-row.json"))) == 40 and not list(without.glob("*/fleet-row.json"))


def _nan_report():
    typed = Report.from_dict(fleetgen.node_report(8, random.Random(2)))
    gemm = next(i for i, c in enumerate(typed.checks) if c.check == "stress.gemm")
    check = typed.checks[gemm]
    odd = (Measurement("stress.gemm", "tflops_bf16", float("nan"), "TFLOP/s", Device("gpu", 0), check.measurements[0].limit),
           Measurement("stress.gemm", "tflops_bf16", float("-inf"), "TFLOP/s", Device("gpu", 1), check.measurements[0].limit))
    from dataclasses import replace
    checks = list(typed.checks)
    checks[gemm] = replace(check, measurements=odd + check.measurements[2:])
    return replace(typed, checks=tuple(checks))


def test_save_report_writes_a_fresh_row_that_reads_as_its_report(tmp_path):
    """What a run leaves (save_report): report.json and its row, 0644; a NaN and an -inf survive the row."""
    out = tmp_path / "node"
    out.mkdir()
    assert save_report(out, _nan_report()) is None
    row_file = out / fleetrow.ROW_NAME
    assert row_file.stat().st_mode & 0o777 == 0o644
    row = json.loads(row_file.read_text())
    assert row["report"]["run_id"] == "run8" and row["report"]["size"] == (out / "report.json").stat().st_size
    assert sorted(s for _, s in row["measurements"]["non_finite"]) == ["-inf", "nan"]
    from_row = fleet.load([out], workers=1)
    row_file.unlink()
    from_report = fleet.load([out], workers=1)
    assert (from_row.from_rows, from_report.fallback) == (1, {"missing": 1})
    pd.testing.assert_frame_equal(from_row.nodes, from_report.nodes)
    sort = ["check", "metric", "device", "value"]
    pd.testing.assert_frame_equal(from_row.measurements().sort_values(sort).reset_index(drop=True),
                                  from_report.measurements().sort_values(sort).reset_index(drop=True))
    assert from_row.measurements()["value"].isna().sum() == 1


@pytest.fixture
def small(tmp_path):
    paths = fleetgen.write_fleet(tmp_path / "fleet", 4, failed={2})
    return tmp_path / "fleet", paths


def test_a_report_rewritten_after_its_row_is_read_whole(small):
    """node 0 rewritten as a Failed run (another size); node 1's values changed in place (same size, later
    mtime); node 3's replaced (same size and mtime, a new inode): each row is stale, each report is read,
    and the review counts the reports' verdicts."""
    folder, paths = small
    failed = fleetgen.node_report(0, random.Random(5), failed=True)
    paths[0].write_text(json.dumps(failed, indent=2))
    text = paths[1].read_text()
    paths[1].write_text(text.replace('"value": 0,', '"value": 9,', 1))
    assert len(paths[1].read_text()) == len(text) and paths[1].read_text() != text
    stat = paths[1].stat()
    os.utime(paths[1], ns=(stat.st_atime_ns, stat.st_mtime_ns + 2_000_000_000))
    before = paths[3].stat()  # node 3: replaced atomically, same size, within the same clock tick
    paths[3].with_suffix(".tmp").write_text(paths[3].read_text().replace('"value": 0,', '"value": 7,', 1))
    os.replace(paths[3].with_suffix(".tmp"), paths[3])
    os.utime(paths[3], ns=(before.st_atime_ns, before.st_mtime_ns))
    assert paths[3].stat().st_size == before.st_size and paths[3].stat().st_ino != before.st_ino
    document, _ = fleet.review([folder])
    assert document["counts"]["by_status"] == {"Passed": 2, "Failed": 2}
    read_from = document["read_from"]
    assert read_from["fleet_rows"] == 1 and read_from["why_report_json"] == {"stale": 3}
    problems = {Path(p["file"]).parent.name: p["why"] for p in read_from["row_problems"]}
    assert problems["node-00000"].startswith("fleet-row.json stale: report.json is ") and "its row says" in problems["node-00000"]
    assert "sha256 differs" in problems["node-00001"] and problems["node-00001"].endswith("read report.json instead")
    assert "sha256 differs" in problems["node-00003"]


def test_a_copied_fleet_whose_times_changed_still_reads_its_rows(small, tmp_path):
    """cp without -p: every mtime is new, the contents are the same; the sha256 vouches for each row."""
    folder, _ = small
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy, copy_function=shutil.copyfile)
    for report in copy.glob("*/report.json"):
        os.utime(report, ns=(1, 1_000_000_000))
    loaded = fleet.load([copy], workers=1)
    assert loaded.from_rows == 4 and loaded.fallback == {}


def _edit_row(path, edit):
    row = json.loads(path.read_text())
    edit(row)
    path.write_text(json.dumps(row))


CORRUPT = {
    "not JSON": (lambda p: p.write_text('{"fleet_row": 1, "report": {'), "corrupt: "),
    "another version": (lambda p: _edit_row(p, lambda r: r.update(fleet_row=99)), "row version 99"),
    "no stamp": (lambda p: _edit_row(p, lambda r: r.pop("report")), "missing field 'report'"),
    "a text value": (lambda p: _edit_row(p, lambda r: r["measurements"]["value"].__setitem__(3, "fast")),
                     "not a number"),
    "a bool value": (lambda p: _edit_row(p, lambda r: r["measurements"]["value"].__setitem__(3, True)),
                     "not a number"),
    "a short column": (lambda p: _edit_row(p, lambda r: r["measurements"]["judgement"].pop()), "measurement columns of"),
    "a device out of range": (lambda p: _edit_row(p, lambda r: r["measurements"]["device"].__setitem__(0, -1)),
                              "a device code out of range"),
    "a series out of range": (lambda p: _edit_row(p, lambda r: r["measurements"]["series"].__setitem__(0, 999)),
                              "a series code out of range"),
    "a judgement out of range": (lambda p: _edit_row(p, lambda r: r["measurements"]["judgement"].__setitem__(0, 7)),
                                 "a judgement code out of range"),
    "a null without non_finite": (lambda p: _edit_row(p, lambda r: r["measurements"]["value"].__setitem__(0, None)),
                                  "not a number"),
    "a number where a metric goes": (lambda p: _edit_row(p, lambda r: r["series"][0].__setitem__(1, 5)),
                                     "expected text, got 5"),
    "a verdict dhc never writes": (lambda p: _edit_row(p, lambda r: r["node"].update(status="Fine")),
                                   "is not a dhc verdict"),
    "a folder": (lambda p: (p.unlink(), p.mkdir()), "not a regular file"),
}


@pytest.mark.parametrize("kind", list(CORRUPT))
def test_a_corrupt_row_is_named_and_its_report_read_instead(small, kind):
    folder, paths = small
    spoil, expected = CORRUPT[kind]
    spoil(paths[2].parent / fleetrow.ROW_NAME)
    document, table = fleet.review([folder])
    read_from = document["read_from"]
    assert read_from["fleet_rows"] == 3 and read_from["why_report_json"] == {"corrupt": 1}
    [problem] = read_from["row_problems"]
    assert problem["file"] == str(paths[2]) and problem["why"].startswith("fleet-row.json corrupt: ")
    assert expected in problem["why"] and problem["why"].endswith("; read report.json instead")
    assert document["reports"] == 4 and document["skipped"] == []
    assert table.set_index("instance_id").loc[f"i-{2:017x}", "status"] == "Failed"  # node 2, from its report


def test_the_page_says_which_reports_were_read_without_their_row(small):
    from dhc.report.fleet_html import render_fleet
    folder, paths = small
    (paths[1].parent / fleetrow.ROW_NAME).write_text("{")
    (paths[3].parent / fleetrow.ROW_NAME).unlink()
    page = render_fleet(fleet.review([folder])[0])
    assert "2 of 4 reports were read from report.json itself (1 corrupt, 1 missing)" in page
    assert f"<code>{paths[1]}</code>: fleet-row.json corrupt: " in page and str(paths[3]) not in page.split("itself")[1]
    assert "read from report.json" not in render_fleet(fleet.review([folder / "node-00000"])[0])


# -- the device label is the model's (issue 11, gap 11) ------------------------------------------------
def _two_cpus():
    typed = Report.from_dict(fleetgen.node_report(1, random.Random(1)))
    limit = Limit(Comparison.MIN, 1, "count", "test")
    extra = (Measurement("stress.inventory", "cores_online", 96, "count", Device("cpu", 0), limit),
             Measurement("stress.inventory", "cores_online", 90, "count", Device("cpu", 1), limit))
    from dataclasses import replace
    checks = list(typed.checks)
    checks[0] = replace(checks[0], measurements=checks[0].measurements + extra)
    return replace(typed, checks=tuple(checks))


@pytest.mark.parametrize("path", ["row", "fast", "json"])
def test_distinct_devices_keep_distinct_labels(tmp_path, monkeypatch, path):
    save_report(tmp_path, _two_cpus())
    if path != "row":
        (tmp_path / fleetrow.ROW_NAME).unlink()
    if path == "json":
        monkeypatch.setattr(read, "_FAST", None)
    m = fleet.load([tmp_path], workers=1).measurements()
    cores = m[m["metric"] == "cores_online"].set_index("device")["value"].to_dict()
    assert cores == {"cpu": 96.0, "cpu 1": 90.0}
    assert Device("cpu", 1).label(ids=False) == "cpu 1" and set(m["device"]) >= {"GPU 0", "GPU 7", "cpu", "cpu 1", "node"}


# -- shapes.py (the fast decoder's report) is tied to the model's generated schema --------------------
NULL_TAKES_THE_JSON_PATH = {"checks[].measurements[].value"}  # null (non-finite) is refused on purpose


def _resolve(node, schema):
    while "$ref" in node:
        node = {**schema["$defs"][node["$ref"].rsplit("/", 1)[1]], **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _json_types(node):
    kind = node.get("type", [])
    named = {{str: "string", int: "integer", float: "number", type(None): "null"}[type(v)] for v in node.get("enum", [])}
    assert kind or named, f"a schema node without a type or enum: {node}"
    return named | set(kind if isinstance(kind, list) else [kind])


def _check(info, node, schema, where, problems):
    node = _resolve(node, schema)
    if "oneOf" in node or "anyOf" in node:  # X | None: the members' types, and the object's or array's fields
        members = [_resolve(m, schema) for m in node.get("oneOf", node.get("anyOf"))]
        node = {**next((m for m in members if _json_types(m) & {"object", "array"}), members[-1]),
                "type": sorted(set().union(*map(_json_types, members)))}
    inspect = msgspec.inspect
    members = info.types if isinstance(info, inspect.UnionType) else (info,)
    wanted = {"string" if isinstance(t, inspect.StrType) else "number" if isinstance(t, inspect.FloatType) else
              "integer" if isinstance(t, inspect.IntType) else "array" if isinstance(t, inspect.ListType) else
              "object" if isinstance(t, inspect.StructType) else "null" if isinstance(t, inspect.NoneType) else repr(t)
              for t in members}
    allowed = _json_types(node) | ({"integer"} if "number" in _json_types(node) else set())
    if not wanted - {"null"} <= allowed | ({"number"} if "integer" in allowed else set()):  # lenient on null
        problems.append(f"{where}: shapes says {sorted(wanted)}, the model {sorted(allowed)}")
    if "null" in allowed and "null" not in wanted and where not in NULL_TAKES_THE_JSON_PATH:
        problems.append(f"{where}: the model allows null, shapes does not")
    for t in members:
        if isinstance(t, inspect.ListType):
            _check(t.item_type, node["items"], schema, f"{where}[]", problems)
        if isinstance(t, inspect.StructType):
            for f in t.fields:
                path = f"{where}.{f.encode_name}".lstrip(".")
                if f.encode_name not in node["properties"]:
                    problems.append(f"{path}: no such field in the report model")
                    continue
                if f.required and f.encode_name not in node.get("required", []):
                    problems.append(f"{path}: required by shapes, optional in the model")
                _check(f.type, node["properties"][f.encode_name], schema, path, problems)


def test_every_field_shapes_decodes_is_in_the_report_model_with_a_compatible_type():
    schema, problems = load_schema(), []
    _check(msgspec.inspect.type_info(shapes.Report), schema, schema, "", problems)
    assert problems == []


def test_the_shapes_check_catches_a_field_the_model_lacks():
    class Drifted(msgspec.Struct):
        schema_version: str
        verdict: int  # an object in the model
        flavour: str  # no such field

    schema, problems = load_schema(), []
    _check(msgspec.inspect.type_info(Drifted), schema, schema, "", problems)
    assert problems == ["verdict: shapes says ['integer'], the model ['object']",
                        "flavour: no such field in the report model"]
