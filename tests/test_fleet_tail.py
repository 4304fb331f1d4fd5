"""The fleet review's work after reading (analysis, CSV, JSON) gives the answers of plain reference code.

The fast paths (whole columns through numpy, the csv module fed from columns, msgspec's encoder,
the values sorted once by metric group) are checked against the simple code they replaced, on
tables and fleets with the odd values a real fleet holds: NaN, infinities, missing text, commas,
quotes, line breaks, non-ASCII names and cells a spreadsheet would run. Also the walk that hands
batches to the pool while it goes (text order, the first batch before the last folder is listed,
no more processes than batches), and reports whose series fields are not text (skipped, with why).
"""

import importlib
import json
import math
import os
import random
from concurrent.futures import ProcessPoolExecutor

import pytest

pd = pytest.importorskip("pandas", reason="the fleet review needs pandas (dhc[fleet])")
np = pytest.importorskip("numpy")

import fleetgen  # noqa: E402

from dhc import fleet  # noqa: E402
from dhc.fleet import analysis  # noqa: E402
from dhc.fleet.load import merge  # noqa: E402
from dhc.fleet.read import Part  # noqa: E402
from dhc.report import write_json_atomic  # noqa: E402

loader = importlib.import_module("dhc.fleet.load")  # the module (dhc.fleet.load is also the function)

ODD_TEXT = ["plain", None, "a,b", 'say "hi"', "two\nlines", "ünïcödé ✓ 节点", "=1+1", "-12.5", "-1+1", "@SUM(A1)",
            "\tx", "\rx", "+", "", "i-0abc", "-1e5"]


def _odd_table():
    n = len(ODD_TEXT)
    floats = [1.5, float("nan"), float("inf"), -float("inf"), -0.0, 1e16, 1e-5, 0.1 + 0.2, 1e308, 5e-324,
              123456789012345680.0, -2.5, 0.0, 3.0, 7.25, float("nan")]
    return pd.DataFrame({
        "text": ODD_TEXT,
        "float": floats[:n],
        "int": list(range(-3, n - 3)),
        "bool": [i % 2 == 0 for i in range(n)],
        "mixed": pd.Series([1, "=x", None, 2.5, float("nan"), float("inf"), "ok", -3, "a,b", True, 0, "", "-1", "ü",
                            None, 1e20][:n], dtype=object),
        "nullable": pd.array([1, None, *range(n - 2)], dtype="Int64"),
        "category": pd.Categorical((["x", "=y", None, "z,w"] * n)[:n]),
    })


def _reference_csv(table):
    """The writer before the fast one: every text cell through ``neutralise``, then pandas writes the text."""
    safe = table.copy()
    for column in safe.columns:
        if not pd.api.types.is_numeric_dtype(safe[column]):
            safe[column] = safe[column].map(fleet.neutralise).astype(object)
    return safe.to_csv(index=False)


def _reference_records(table):
    """The records before the fast ones: cell by cell, NaN and infinities as None."""
    columns = [[None if isinstance(v, float) and not math.isfinite(v) else v for v in table[c].tolist()]
               for c in table.columns]
    return [dict(zip(table.columns, row, strict=True)) for row in zip(*columns, strict=True)]


def test_csv_from_columns_is_the_text_pandas_wrote_for_odd_cells(tmp_path):
    table = _odd_table()
    fleet.write_csv(table, tmp_path / "fast.csv")
    text = (tmp_path / "fast.csv").read_bytes().decode()  # as written: "\r" in a quoted cell stays "\r"
    assert text == _reference_csv(table)
    assert "\n'=1+1," in text and "\n'@SUM(A1)," in text and "\n-12.5," in text and '\n"a,b",' in text  # neutralised


def test_csv_of_a_column_numpy_cannot_turn_is_written_by_pandas(tmp_path):
    table = _odd_table().assign(when=pd.date_range("2026-11-30", periods=len(ODD_TEXT), freq="h", tz="UTC"))
    fleet.write_csv(table, tmp_path / "dates.csv")
    assert (tmp_path / "dates.csv").read_bytes().decode() == _reference_csv(table)


def test_records_from_columns_equal_cell_by_cell_records():
    table = _odd_table().drop(columns=["nullable"])  # pd.NA has no JSON meaning either way
    fast = fleet.records(table)
    assert fast == _reference_records(table)
    assert fast[1]["text"] is None and fast[2]["float"] is None and fast[3]["float"] is None  # missing, inf, -inf
    assert type(fast[0]["int"]) is int and type(fast[0]["float"]) is float and type(fast[0]["bool"]) is bool


def _document():
    records = fleet.records(_odd_table().drop(columns=["nullable"]))
    return {"schema_version": "1.3", "nodes": records, "empty": [], "nested": {"k": {}, "ünï": [1, 2.5, None]},
            "tiny": 1e-5, "huge": 1e308, "k": 3.5}


def test_json_writer_writes_the_values_json_writes(tmp_path):
    document = _document()
    fleet.write_json(document, tmp_path / "fast.json")
    write_json_atomic(tmp_path / "plain.json", document)
    fast = (tmp_path / "fast.json").read_text(encoding="utf-8")
    assert json.loads(fast) == json.loads((tmp_path / "plain.json").read_text(encoding="utf-8")) == json.loads(
        json.dumps(document))
    assert fast.startswith('{\n  "schema_version": "1.3",\n  "nodes": [\n    {\n') and fast.endswith("}\n")  # indented
    assert "节点" in fast  # non-ASCII as UTF-8, not escaped


def test_a_document_msgspec_refuses_is_written_by_json(tmp_path):
    document = {"counts": {"by_type": {None: {"Passed": 1}}}, "k": 3.5}  # json spells the key "null"
    fleet.write_json(document, tmp_path / "odd.json")
    assert json.loads((tmp_path / "odd.json").read_text()) == {"counts": {"by_type": {"null": {"Passed": 1}}}, "k": 3.5}


def test_json_writer_without_msgspec_is_the_plain_writer(tmp_path, monkeypatch):
    document = _document()
    monkeypatch.setattr(fleet, "msgspec", None)
    fleet.write_json(document, tmp_path / "fallback.json")
    write_json_atomic(tmp_path / "plain.json", document)
    assert (tmp_path / "fallback.json").read_text() == (tmp_path / "plain.json").read_text()


# -- analysis: outliers and distributions against a pandas groupby -------------------------------------
NODE = ["f", "i", "t1", "r", "n", "Passed", "None", "quick", "2026-11-30T00:00:00Z", 1.0, 0, 0, ""]
MIN_BW, MAX_BW = ("min", 100.0, "GB/s"), ("max", 500.0, "GB/s")


def _measured(node, rng):
    """One node's measurements: a bandwidth judged by a minimum (nodes 0-19) or a maximum (20-29) in one
    metric group, planted values on both sides, a value already outside, NaN and inf; an unlimited
    metric; a metric all alike; a metric too rare to judge; a latency whose first node has no limit."""
    bw_limit = MIN_BW if node < 20 else MAX_BW
    out = []
    for gpu in range(8):
        value, judgement = 300 + rng.uniform(-10, 10), "within"
        value = {(3, 2): 200.0, (25, 1): 400.0, (4, 0): 400.0, (26, 0): 200.0, (7, 5): 150.0,
                 (8, 0): float("nan"), (8, 1): float("inf")}.get((node, gpu), value)
        judgement = "outside" if (node, gpu) == (7, 5) else judgement
        out.append((("c.bw", "bw", "GB/s", bw_limit), f"GPU {gpu}", value, judgement))
        out.append((("c.temp", "temp", "C", None), f"GPU {gpu}", 40 + rng.uniform(-1, 1) + 30 * (node == 9), "unlimited"))
    out.append((("c.err", "errors", "count", ("max", 0.0, "count")), "node", 0.0, "within"))
    if node < 4:
        out.append((("c.rare", "rare", "s", ("max", 5.0, "s")), "node", 1.0 + node * (node == 3) * 9, "within"))
    latency_limit = None if node == 0 else ("max", 9.0 if node < 15 else 7.0, "ms")
    out.append((("c.lat", "latency", "ms", latency_limit), "node", 3 + rng.uniform(0, 1), "within"))
    return out


@pytest.fixture(scope="module")
def handmade():
    rng = random.Random(7)
    parts = []
    for first in (0, 12, 24):  # three parts, merged in order as the pool hands them
        part = Part()
        for node in range(first, min(first + 12, 30)):
            part.add([f"n{node}/report.json", f"i-{node:03d}", *NODE[2:]], _measured(node, rng), [])
        parts.append(part)
    return merge(parts, [])


def _reference_outliers(fl, k=3.5):
    m = fl.measurements()
    m = m[m["comparison"].isin(["min", "max"]) & np.isfinite(m["value"])]
    found = []
    for _, g in m.groupby(analysis.METRIC_KEYS):
        if len(g) < analysis.MIN_GROUP:
            continue
        median = g["value"].median()
        mad = (g["value"] - median).abs().median()
        if mad == 0:
            continue
        z = (g["value"] - median) / (mad * analysis.MAD_SCALE)
        hit = (np.where(g["comparison"] == "min", -z, z) > k) & (g["judgement"] == "within").to_numpy()
        found += [(r.instance_id, r.metric, r.device, r.value, round(zz, 9)) for r, zz in zip(g[hit].itertuples(), z[hit], strict=True)]
    return sorted(found, key=lambda t: t[-1])


def test_outliers_are_those_a_groupby_finds_on_the_wrong_side_only(handmade):
    suspects = analysis.outliers(handmade)
    got = [(r.instance_id, r.metric, r.device, r.value, round(r.robust_z, 9)) for r in suspects.itertuples()]
    assert got == _reference_outliers(handmade)
    assert [(g[0], g[2]) for g in got] == [("i-003", "GPU 2"), ("i-025", "GPU 1")]  # low under a min, high under a max
    assert suspects["node_row"].tolist() == [3, 25] and (suspects["median"] > 290).all()


def test_distributions_take_the_first_limit_in_file_order_and_leave_out_non_finite(handmade):
    by_metric = {d["metric"]: d for d in analysis.distributions(handmade)}
    assert set(by_metric) == {"bw", "temp", "errors", "rare", "latency"}
    bw, latency = by_metric["bw"], by_metric["latency"]
    assert (bw["count"], bw["non_finite"], bw["comparison"], bw["limit"]) == (238, 2, "min", 100.0)
    assert (latency["comparison"], latency["limit"], latency["limit_unit"]) == ("max", 9.0, "ms")  # node 1's, not 15's
    assert by_metric["temp"]["limit"] is None and by_metric["errors"]["histogram"]["counts"] == [30]
    finite = handmade.values["value"][handmade.values["value"].map(math.isfinite)]
    assert sum(d["count"] for d in by_metric.values()) == len(finite)


def test_the_sorted_copy_is_kept_for_the_analysis_and_released_after(handmade):
    first = analysis.grouped(handmade)
    assert analysis.grouped(handmade) is first  # outliers and distributions share one sort
    assert first.values.size == len(handmade.values) and (np.diff(first.numbers[first.series]) >= 0).all()
    analysis.release(handmade)
    assert analysis.grouped(handmade) is not first


# -- the walk: text order as it goes, so reading starts before the last folder is listed ---------------
NAMES = ["a", "a-b", "a.b", "a0", "ab", "A", "Z", "é", "a b", "report.json.d", "x/y/z", "a/b-c", "a/b/c", "a/b.c/d"]


@pytest.fixture
def odd_tree(tmp_path):
    root = tmp_path / "fleet"
    for name in NAMES:
        (root / name).mkdir(parents=True, exist_ok=True)
        (root / name / "report.json").write_text("{}")
    (root / "report.json").write_text("{}")
    (root / "a" / "notes.txt").write_text("")
    (root / "é" / "link").symlink_to(root / "a", target_is_directory=True)  # in the folder walked last
    return root


def test_the_walk_gives_reports_in_the_order_sorting_their_paths_gives(odd_tree):
    files, skipped = loader.find_reports([odd_tree])
    every = sorted(os.path.join(folder, "report.json") for folder, _, names in os.walk(odd_tree) if "report.json" in names)
    assert [str(f) for f in files] == every and len(every) == len(NAMES) + 1
    assert skipped == [(str(odd_tree / "é" / "link"), "a symbolic link to a folder; not followed")]


def test_several_paths_are_sorted_together(odd_tree):
    files, _ = loader.find_reports([odd_tree / "x", odd_tree / "a" / "report.json", odd_tree / "a-b"])
    assert [str(f) for f in files] == sorted(str(f) for f in files) and len(files) == 3


def test_the_first_batch_is_handed_out_before_the_walk_has_listed_every_folder(odd_tree):
    links = []
    batches = loader._batches(loader._reports([odd_tree], links), 2)
    first = next(batches)
    assert first == [str(odd_tree / "A" / "report.json"), str(odd_tree / "Z" / "report.json")]
    assert links == []  # the link's folder comes last: not listed yet
    assert sum(map(len, batches)) == len(NAMES) + 1 - 2 and links  # the rest, and the link once walked past


def test_no_reports_make_one_empty_batch(tmp_path):
    assert list(loader._batches(iter([]), 1000)) == [[]]


@pytest.mark.parametrize("case", ["uniform", "on-edges", "duplicates", "one-value", "two-values", "negative", "tiny",
                                  "scaled-huge", "skewed"])
def test_the_histogram_of_sorted_values_is_numpys(case):
    rng = np.random.default_rng(11)
    values = {"uniform": rng.uniform(-1, 1, 5000), "on-edges": np.linspace(0, 1, 21).repeat(3),
              "duplicates": rng.integers(0, 4, 1000).astype(float), "one-value": np.full(7, 0.25),
              "two-values": np.array([0.5, 1.0]), "negative": -rng.exponential(1, 999), "tiny": rng.uniform(0, 1e-300, 500),
              "scaled-huge": np.array([1e308, -1e308, 0.0, 1e307]) / 1e308, "skewed": rng.lognormal(0, 3, 4000)}[case]
    ordered = np.sort(values)
    for bins in (1, 2, 7, 20):
        counts, edges = analysis.sorted_histogram(ordered, bins)
        expected_counts, expected_edges = np.histogram(ordered, bins=bins)
        assert counts.tolist() == expected_counts.tolist() and edges.tolist() == expected_edges.tolist()


@pytest.mark.parametrize(("field", "why"), [
    ("unit", "measurement tflops_bf16 unit: expected text, got null"),
    ("name", "measurement name: expected text, got null"),
    ("instance_type", "instance type: expected text, got null"),
])
def test_a_report_whose_series_is_not_text_is_skipped_with_why_and_the_rest_reviewed(tmp_path, field, why):
    fleetgen.write_fleet(tmp_path, 6)
    document = fleetgen.node_report(50, random.Random(1))
    gemm = next(c for c in document["checks"] if c["check"] == "stress.gemm")["measurements"][0]
    if field == "instance_type":
        document["thresholds"]["instance_type"] = None
    else:
        gemm[field] = None
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "report.json").write_text(json.dumps(document))
    review, _ = fleet.review([tmp_path], workers=1)
    assert review["reports"] == 6 and review["skipped"] == [{"file": str(tmp_path / "odd" / "report.json"), "why": why}]
    assert review["distributions"] and all(isinstance(d["unit"], str) for d in review["distributions"])


def test_the_pool_has_no_more_processes_than_batches(tmp_path, monkeypatch):
    fleetgen.write_fleet(tmp_path, 7)
    sizes = []

    class Recording(ProcessPoolExecutor):  # the real pool, its size noted
        def __init__(self, max_workers):
            sizes.append(max_workers)
            super().__init__(max_workers=max_workers)
    monkeypatch.setattr(loader, "ProcessPoolExecutor", Recording)
    pooled = loader.load([tmp_path], workers=8, batch=3)  # 3 batches: 3, 3 and 1 reports
    assert sizes == [3] and len(pooled.nodes) == 7
    pd.testing.assert_frame_equal(pooled.nodes, loader.load([tmp_path], workers=1).nodes)
    assert loader.load([tmp_path], workers=8, batch=7) is not None and sizes == [3]  # one batch: no pool at all


def test_a_number_for_a_metric_name_is_grouped_by_its_text_and_the_report_counted(tmp_path):
    """As the review always did: a node's verdict is never dropped for a series field it can spell."""
    fleetgen.write_fleet(tmp_path, 6)
    document = fleetgen.node_report(50, random.Random(1))
    next(c for c in document["checks"] if c["check"] == "stress.gemm")["measurements"][0]["name"] = 12
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "report.json").write_text(json.dumps(document))
    review, _ = fleet.review([tmp_path], workers=1)
    assert review["reports"] == 7 and review["skipped"] == []
    assert any(d["metric"] == "12" for d in review["distributions"])


def test_a_row_without_an_instance_type_is_corrupt_and_its_report_read_instead(tmp_path):
    from dhc.report import fleetrow

    fleetgen.write_fleet(tmp_path, 1)
    [path] = tmp_path.rglob(fleetrow.ROW_NAME)
    row = json.loads(path.read_text())
    fleetrow.parse(row)  # as written: accepted
    row["node"]["instance_type"] = None
    with pytest.raises(TypeError, match="expected text, got None"):
        fleetrow.parse(row)
    path.write_text(json.dumps(row))
    review, _ = fleet.review([tmp_path], workers=1)
    assert review["reports"] == 1 and review["read_from"]["why_report_json"] == {"corrupt": 1}


def test_distributions_never_carry_nan_or_inf_limits(handmade):
    """An infinite first limit (1e400 in a report) and a missing limit unit become null, the same with
    msgspec or json writing the file (json refuses NaN and inf)."""
    series = handmade.series.copy()
    first_bw = series.index[series["metric"] == "bw"][0]
    handmade.series.loc[first_bw, ["limit", "limit_unit"]] = [math.inf, None]
    try:
        analysis.release(handmade)
        bw = next(d for d in analysis.distributions(handmade) if d["metric"] == "bw")
        assert (bw["limit"], bw["limit_unit"], bw["comparison"]) == (None, None, "min")
        json.dumps(bw, allow_nan=False)
    finally:
        handmade.series = series
        analysis.release(handmade)


def test_three_adjacent_doubles_get_fewer_bins_not_a_traceback():
    ordered = np.array([-7.000000000000001, -7.0, -6.999999999999999])
    with pytest.raises(ValueError):
        np.histogram(ordered, bins=3)
    counts, edges = analysis.sorted_histogram(ordered, 3)
    assert counts.sum() == 3 and len(edges) == len(counts) + 1 and np.isfinite(edges).all()


def test_a_path_that_is_not_utf8_is_written_escaped_in_json_csv_and_page(tmp_path):
    odd = "bad-\udcff/report.json"  # what os.scandir gives for a folder named with byte 0xff
    document = {"skipped": [{"file": odd, "why": "not JSON"}], "nodes": []}
    fleet.write_json(document, tmp_path / "fleet.json")
    assert json.loads((tmp_path / "fleet.json").read_text())["skipped"][0]["file"] == odd
    from dhc.report.files import UNDECODABLE_ESCAPED, write_text_atomic

    write_text_atomic(tmp_path / "page.html", odd, errors=UNDECODABLE_ESCAPED)
    assert (tmp_path / "page.html").read_text(encoding="utf-8") == "bad-\\udcff/report.json"


def test_k_must_be_a_finite_number_above_zero(tmp_path):
    import subprocess
    import sys

    for bad in ("nan", "inf", "0", "-1", "x"):
        proc = subprocess.run([sys.executable, "-m", "dhc", "report", "fleet", str(tmp_path), "-k", bad],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and "expected a finite number above 0" in proc.stderr and "Traceback" not in proc.stderr
