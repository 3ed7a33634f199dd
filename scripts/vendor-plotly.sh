#!/usr/bin/env bash
# Refresh the plotly.js bundle the HTML report inlines (loadtest/report/vendor/): fetch
# plotly.js-dist-min VERSION from the npm registry, copy its minified bundle and licence, and
# record version and sha256 in plotly.json. Needs npm. Then run the report's browser tests.
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:?usage: scripts/vendor-plotly.sh VERSION (e.g. 4.1.1)}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
(cd "$tmp" && npm pack --silent "plotly.js-dist-min@$version" >/dev/null && tar xzf ./*.tgz)
dest=loadtest/report/vendor
cp "$tmp/package/plotly.min.js" "$dest/plotly.min.js"
cp "$tmp/package/LICENSE" "$dest/plotly-LICENSE.txt"
sha=$(sha256sum "$dest/plotly.min.js" | cut -d' ' -f1)
python3 - "$dest/plotly.json" "$version" "$sha" <<'PY'
import json, sys
path, version, sha = sys.argv[1:]
doc = json.load(open(path, encoding="utf-8"))
doc.update(version=version, sha256=sha,
           source=f"https://registry.npmjs.org/plotly.js-dist-min/-/plotly.js-dist-min-{version}.tgz")
open(path, "w", encoding="utf-8").write(json.dumps(doc, indent=2) + "\n")
PY
echo "plotly.js $version vendored ($sha)"
