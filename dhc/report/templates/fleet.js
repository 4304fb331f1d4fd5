(function () {
  "use strict";
  var table = document.getElementById("nodes"), rows = Array.prototype.slice.call(table.tBodies[0].rows);
  var filter = document.getElementById("filter"), status = document.getElementById("status");
  var shown = document.getElementById("shown");
  function apply() {
    var text = filter.value.toLowerCase(), want = status.value, count = 0;
    rows.forEach(function (row) {
      var ok = (!text || row.textContent.toLowerCase().indexOf(text) !== -1) &&
               (!want || (want === "suspect" ? row.dataset.suspect !== "0" : row.dataset.status === want));
      row.style.display = ok ? "" : "none";
      if (ok) { count += 1; }
    });
    shown.textContent = count + " of " + rows.length + " nodes" +
      (Number(table.dataset.total) > rows.length ? " in this page (" + table.dataset.total + " in all)" : "");
  }
  Array.prototype.forEach.call(table.tHead.rows[0].cells, function (cell, index) {
    if (!cell.classList.contains("sortable")) { return; }
    cell.addEventListener("click", function () {
      var down = cell.dataset.order !== "asc";
      cell.dataset.order = down ? "asc" : "desc";
      rows.sort(function (a, b) {
        var x = a.cells[index].textContent.trim(), y = b.cells[index].textContent.trim();
        var nx = parseFloat(x), ny = parseFloat(y);
        var order = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
        return down ? order : -order;
      });
      rows.forEach(function (row) { table.tBodies[0].appendChild(row); });
    });
  });
  filter.addEventListener("input", apply);
  status.addEventListener("change", apply);
  var linked = /^#status=(\w+)$/.exec(window.location.hash);  // a link can open the table filtered
  if (linked) { status.value = linked[1]; }
  apply();
  document.body.dataset.readyMs = String(Math.round(performance.now()));  // time to a usable page, for the tests
}());
