#!/usr/bin/env python3
"""page.py VIEW.js FIXTURES.json OUT.html [ACTION [PREFILL.json]]

Writes one self-contained HTML page that loads the LuCI stand-ins (standin.js), the fixture
answers and the view's source, and renders the view (then calls ACTION, e.g. handleAdd).
"""
import json
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
view, fixtures, out = sys.argv[1:4]
action = sys.argv[4] if len(sys.argv) > 4 else ""
prefill = json.load(open(sys.argv[5])) if len(sys.argv) > 5 else {}


def js(value):
    # JSON is JavaScript; "</" is escaped so no string can close the <script> element.
    return json.dumps(value).replace("</", "<\\/")


page = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>loading</title>
<style>
body {{ font: 14px sans-serif; margin: 16px; background: #fff; color: #000; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccc; padding: 2px 6px; }}
.modal {{ border: 2px solid #444; padding: 8px; margin-bottom: 12px; }}
canvas {{ display: block; margin: 8px 0; }}
</style></head>
<body><div id="maincontent"></div>
<script>{standin}</script>
<script>window.FIXTURES = {fixtures};</script>
<script>renderView({source}, {action}, {prefill});</script>
</body></html>
""".format(
    standin=open(os.path.join(here, "standin.js")).read(),
    fixtures=js(json.load(open(fixtures))),
    source=js(open(view).read()),
    action=js(action),
    prefill=js(prefill),
)
with open(out, "w") as f:
    f.write(page)
