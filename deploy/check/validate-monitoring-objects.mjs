// Validates Prometheus-operator objects (ServiceMonitor, PrometheusRule)
// against the operator's CRD schemas, as packaged by
// @kubernetes-models/prometheus-operator. Reads a JSON array of objects on
// stdin; exits 1 naming each object that does not validate.
//   NODE_PATH=.tools/node_modules node deploy/check/validate-monitoring-objects.mjs < objects.json
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

// The package is installed under .tools, not beside this script, and is
// import-only: load it by path.
const v1 = await import(
  pathToFileURL(
    join(
      process.env.NODE_PATH,
      "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/index.js",
    ),
  ).href
);
const objects = JSON.parse(readFileSync(0, "utf8"));
let failed = 0;
for (const o of objects) {
  const what = `${o.kind}/${o.metadata?.name}`;
  const Model = v1[o.kind];
  if (o.apiVersion !== "monitoring.coreos.com/v1" || !Model) {
    console.error(`${what}: not a monitoring.coreos.com/v1 kind this check knows`);
    failed++;
    continue;
  }
  try {
    new Model(o).validate();
    console.log(`${what}: valid`);
  } catch (e) {
    console.error(`${what}: ${e.message}`);
    failed++;
  }
}
if (objects.length === 0) {
  console.error("no objects to validate");
  failed++;
}
process.exit(failed ? 1 : 0);
