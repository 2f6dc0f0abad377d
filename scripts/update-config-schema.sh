#!/usr/bin/env bash
# Regenerates the config's JSON Schema from lifeguard's own types (see
# src/config/schema.rs) into the two places it is published:
#
#   docs/config.schema.json                  for editors (`lifeguard schema`)
#   helm/lifeguard/values.schema.json        only the `lifeguard.config`
#                                            subtree (`lifeguard schema --chart`);
#                                            the rest of the file is kept as is
#
# Run it after changing a config key; tests/config_schema.rs fails until the
# committed files equal the generated schema.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
cargo build --quiet --bin lifeguard
bin="target/debug/lifeguard"
"$bin" schema > docs/config.schema.json
chart="$("$bin" schema --chart)"
CHART_SCHEMA="$chart" python3 - <<'PY'
import json, os
path = "helm/lifeguard/values.schema.json"
with open(path) as f:
    values = json.load(f)
values["properties"]["lifeguard"]["properties"]["config"] = json.loads(os.environ["CHART_SCHEMA"])
with open(path, "w") as f:
    json.dump(values, f, indent=2, ensure_ascii=False)
    f.write("\n")
PY
echo "updated docs/config.schema.json and helm/lifeguard/values.schema.json (lifeguard.config)"
