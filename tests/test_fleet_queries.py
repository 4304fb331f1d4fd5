"""The shipped fleet queries: DuckDB's answers equal dhc's own review; Insights names only fields dhc emits."""

import json
import random
import re

import pytest

pytest.importorskip("pandas", reason="the fleet review needs pandas (dhc[fleet])")

import fleetgen  # noqa: E402

from dhc import fleet  # noqa: E402
from dhc.fleet import queries  # noqa: E402
from dhc.model.report import Report  # noqa: E402
from dhc.sinks.logline import summary_line, verdict_lines  # noqa: E402


@pytest.fixture(scope="module")
def history(tmp_path_factory):
    """Two instance types, a node checked twice (months of history), and files no review can read."""
    folder = tmp_path_factory.mktemp("history")
    fleetgen.write_fleet(folder, 30, failed={3, 17}, incomplete={5, 17}, suspects={11: 6})
    rng = random.Random(5)
    extra = {"p4d-0": dict(failed=True), "p4d-1": dict(incomplete=True), "p4d-2": {}, "again-3": dict(failed=True)}
    for name, kind in extra.items():
        document = fleetgen.node_report(3 if name == "again-3" else 100 + len(name), rng, **kind)
        if name.startswith("p4d"):
            document["thresholds"]["instance_type"] = "ml.p4d.24xlarge"
            document["instance"]["instance_id"]["value"] = f"i-p4d{name[-1]}"
        (folder / name).mkdir()
        (folder / name / "report.json").write_text(json.dumps(document, indent=2))
    for name, text in (("other", '{"schema_version": "2.0"}'), ("partial", '{"schema_version": "1.0", "instance": {}}')):
        (folder / name).mkdir()
        (folder / name / "report.json").write_text(text)
    return folder


@pytest.fixture(scope="module")
def answers(history):
    duckdb = pytest.importorskip("duckdb", reason="duckdb comes with the test extra")
    setup, named = queries.duckdb_queries(str(history / "*" / "report.json"))
    con = duckdb.connect()
    con.execute(setup)
    out = {}
    for name, sql in named.items():
        cursor = con.execute(sql)
        columns = [d[0] for d in cursor.description]
        out[name] = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
    return out


def test_duckdb_counts_per_type_equal_dhc(history, answers):
    document, _ = fleet.review([history])
    assert document["reports"] == 34 and len(document["skipped"]) == 2
    by_type = {}
    for row in answers["by_type"]:
        by_type.setdefault(row["instance_type"], {})[row["status"]] = row["reports"]
    assert by_type == document["counts"]["by_type"]
    assert by_type["ml.p4d.24xlarge"] == {"Failed": 1, "Incomplete": 1, "Passed": 1}


def test_duckdb_counts_per_type_and_check_equal_dhc(history, answers):
    document, _ = fleet.review([history])
    assert answers["checks_by_type"] == document["checks_by_type"]
    dcgm = next(r for r in answers["checks_by_type"]
                if (r["instance_type"], r["check"]) == ("ml.p5.48xlarge", "stress.dcgm"))
    assert (dcgm["Passed"], dcgm["Incomplete"]) == (29, 2)  # 30 nodes and the repeat of node 3, less 5 and 17


def test_duckdb_failed_checks_equal_dhc(history, answers):
    document, _ = fleet.review([history])
    ranked = [(r["check"], r["status"], r["nodes"]) for r in answers["failed_checks"]]
    assert ranked == [(r["check"], r["status"], r["nodes"]) for r in document["failed_checks"]]
    assert ("stress.inventory", "Failed", 3) in ranked  # nodes 3 (twice: one node), 17 and p4d-0
    assert {r["example"] for r in answers["failed_checks"]} == {"missing GPU", "dcgmi is not on PATH"}


def test_duckdb_worst_nodes_are_dhcs_worst(history, answers):
    _, table = fleet.review([history])
    bad = table[table["status"] != "Passed"]
    worst = answers["worst_nodes"][:len(bad)]
    assert [r["status"] for r in worst] == list(bad["status"])
    assert sorted(r["instance_id"] for r in worst) == sorted(bad["instance_id"])
    assert worst[0]["failed_checks"] == 1 and worst[0]["status"] == "Failed"


def test_duckdb_names_a_file_that_is_not_json(tmp_path):
    duckdb = pytest.importorskip("duckdb", reason="duckdb comes with the test extra")
    fleetgen.write_fleet(tmp_path, 2)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "report.json").write_text("{not json")
    setup, named = queries.duckdb_queries(str(tmp_path / "*" / "report.json"))
    con = duckdb.connect()
    con.execute(setup)
    with pytest.raises(duckdb.Error, match=r"broken/report\.json"):
        con.execute(named["by_type"]).fetchall()


# -- Logs Insights: not run (moto runs no filter or stats); every name checked against emitted lines --
INSIGHTS_WORDS = {"filter", "stats", "sort", "limit", "by", "as", "and", "or", "not", "in", "like", "asc", "desc"}
INSIGHTS_FUNCTIONS = {"count", "count_distinct", "latest", "ispresent"}


def _emitted():
    """The lines `dhc run` sends to CloudWatch Logs for a node that failed one check and could not decide another."""
    document = fleetgen.node_report(7, random.Random(1), failed=True, incomplete=True)
    typed = Report.from_dict(document)
    return {"summary": [summary_line(typed)], "verdict": verdict_lines(typed)}


def _names(query):
    text = "\n".join(line for line in query.splitlines() if not line.lstrip().startswith("#"))
    text = re.sub(r'"[^"]*"', " ", text)
    text = re.sub(r"/(?:\\.|[^/\n])+/", " ", text)  # regular expressions
    functions = set(re.findall(r"([A-Za-z_][\w]*)\s*\(", text))
    aliases = set(re.findall(r"\bas\s+([A-Za-z_]\w*)", text))
    names = set(re.findall(r"[@A-Za-z_][\w.]*", text)) - INSIGHTS_WORDS - functions - aliases
    return names, functions


@pytest.mark.parametrize("name", sorted(queries.insights_queries()))
def test_insights_query_names_only_fields_dhc_emits(name):
    query = queries.insights_queries()[name]
    kind = re.search(r"^# lines: (\w+)$", query, re.M).group(1)
    lines = _emitted()[kind]
    names, functions = _names(query)
    assert functions <= INSIGHTS_FUNCTIONS, functions - INSIGHTS_FUNCTIONS
    assert names and all(names <= set(line) for line in lines), (names, [sorted(line) for line in lines])
    levels = set(re.findall(r'level (?:= "(\w+)"|in \[([^]]+)\])', query)[0])
    wanted = {w.strip(' "') for group in levels for w in group.split(",") if w.strip()}
    assert wanted == {line["level"] for line in lines}


def test_insights_summary_filter_matches_the_summary_line_of_every_verdict():
    pattern = re.search(r"msg like /(.+)/$", queries.insights_queries()["by_type"], re.M).group(1)
    for kind in ({}, {"failed": True}, {"incomplete": True}):
        line = summary_line(Report.from_dict(fleetgen.node_report(1, random.Random(1), **kind)))
        assert re.search(pattern, line["msg"]) and line["status"] in ("Passed", "Failed", "Incomplete")


def test_insights_verdict_lines_carry_check_and_status():
    lines = _emitted()["verdict"]
    assert {(line["level"], line["check"], line["status"]) for line in lines} == {
        ("error", "stress.inventory", "Failed"), ("warning", "stress.dcgm", "Incomplete")}
