-- dhc fleet review in DuckDB (>= 1.1), over the report.json files themselves: the same counts as
-- `dhc report fleet` (per instance type; per type and check; what failed most; the worst nodes)
-- for a fleet too large for one machine's review, or reports already in a bucket.
--
-- Where the reports are: a local glob, or a bucket (first: INSTALL httpfs; LOAD httpfs;
-- CREATE SECRET (TYPE s3, PROVIDER credential_chain);). dhc writes reports/<run>/report.json.
SET VARIABLE dhc_reports = 's3://my-bucket/reports/*/report.json';

-- One row per dhc report (schema 1.x, a dhc verdict); only the fields read below are parsed
-- (explicit columns: no type guessing across months of files). JSON that is no dhc report is left
-- out by the WHERE clause, as `dhc report fleet` skips it. A file that is not JSON at all stops
-- the query with an error naming it (DuckDB cannot skip a broken multi-line JSON file).
CREATE OR REPLACE TEMP VIEW dhc_report AS
SELECT filename AS file,
       thresholds.instance_type AS instance_type,
       instance.instance_id.value AS instance_id,
       verdict.status AS status,
       verdict.action AS action,
       checks,
       (SELECT count(*) FROM unnest(checks) AS u(c) WHERE c.status = 'Failed') AS failed_checks,
       (SELECT count(*) FROM unnest(checks) AS u(c) WHERE c.status = 'Incomplete') AS incomplete_checks
FROM read_json(getvariable('dhc_reports'),
               format = 'unstructured', filename = true, maximum_object_size = 67108864,
               columns = {schema_version: 'VARCHAR',
                          thresholds: 'STRUCT(instance_type VARCHAR)',
                          instance: 'STRUCT(instance_id STRUCT(value VARCHAR))',
                          verdict: 'STRUCT(status VARCHAR, action VARCHAR)',
                          checks: 'STRUCT("check" VARCHAR, status VARCHAR, reason VARCHAR)[]'})
WHERE schema_version LIKE '1.%'
  AND verdict.status IN ('Passed', 'Failed', 'Incomplete')
  AND verdict.action IN ('None', 'Reboot', 'Replace');

-- name: by_type
-- Reports per instance type and verdict (the page's "By instance type").
SELECT instance_type, status, count(*) AS reports
FROM dhc_report
GROUP BY instance_type, status
ORDER BY instance_type, status;

-- name: checks_by_type
-- Reports per instance type and check, by the check's status (the page's "By instance type and check").
SELECT r.instance_type, c."check",
       count(*) FILTER (WHERE c.status = 'Passed') AS "Passed",
       count(*) FILTER (WHERE c.status = 'Failed') AS "Failed",
       count(*) FILTER (WHERE c.status = 'Incomplete') AS "Incomplete",
       count(*) FILTER (WHERE c.status = 'Skipped') AS "Skipped"
FROM dhc_report AS r, unnest(r.checks) AS u(c)
GROUP BY r.instance_type, c."check"
ORDER BY r.instance_type, c."check";

-- name: failed_checks
-- What failed most: nodes (distinct instances) per check and status, with one reason as an example.
SELECT c."check", c.status, count(DISTINCT r.instance_id) AS nodes, any_value(c.reason) AS example
FROM dhc_report AS r, unnest(r.checks) AS u(c)
WHERE c.status IN ('Failed', 'Incomplete')
GROUP BY c."check", c.status
ORDER BY nodes DESC, c."check", c.status;

-- name: worst_nodes
-- The worst reports first: Failed, then Incomplete, then most failed and undecided checks.
SELECT instance_id, instance_type, status, action, failed_checks, incomplete_checks, file
FROM dhc_report
ORDER BY CASE status WHEN 'Failed' THEN 0 WHEN 'Incomplete' THEN 1 ELSE 2 END,
         failed_checks DESC, incomplete_checks DESC, instance_id
LIMIT 100;
