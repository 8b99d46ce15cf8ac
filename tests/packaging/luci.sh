#!/usr/bin/env bash
# tests/packaging/luci.sh - luci-app-gatecert (openwrt/luci-app-gatecert):
#  1. the feed Makefile (luci.mk, LUCI_TITLE, LUCI_DEPENDS:=+gatecert);
#  2. the menu and ACL JSON: they parse, every menu view has its file, the menu depends on the
#     ACL, the ACL grants only ubus object gatecert and uci gatecert, reads only what reads,
#     and its methods are exactly those the rpcd plugin lists;
#  3. the rpcd plugin (with a stand-in jshn.sh: libubox is not in Debian) against the real
#     gatecert binary and a temp config: list, status, tokens, token_add (bundle + QR matrix),
#     token_revoke, leaves, features, log; arguments that look like options are refused;
#  4. every view rendered in headless Chromium against LuCI stand-ins (tests/packaging/luci/)
#     fed with what the plugin answered; the tokens view adds a token, and its QR code in the
#     screenshot (target/test-logs/luci/tokens.png) decodes (zbarimg) back to the bundle.
# Part 4 needs chromium and zbar-tools: it is skipped, loudly, when they are missing.
set -uo pipefail
# shellcheck source=tests/packaging/lib.sh
. "$(dirname "$0")/lib.sh"
cd "$REPO" || exit 1
APP=openwrt/luci-app-gatecert
PLUGIN=$APP/root/usr/libexec/rpcd/gatecert
OUT=target/test-logs/luci
mkdir -p "$OUT"
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT

# 1. Makefile, and the plugin is executable (rpcd runs it)
ok "the rpcd plugin is executable" test -x "$PLUGIN"
mk=$(cat "$APP/Makefile")
contains "Makefile includes luci.mk" 'include ../../luci.mk' "$mk"
contains "Makefile has LUCI_TITLE" 'LUCI_TITLE:=' "$mk"
contains "Makefile depends on gatecert" 'LUCI_DEPENDS:=+gatecert' "$mk"

# 2. menu and ACL
ok "menu.d and acl.d JSON, the views, the plugin's methods and the settings' options agree" python3 - "$APP" <<'PY'
import json, os, subprocess, sys
app = sys.argv[1]
menu = json.load(open(f"{app}/root/usr/share/luci/menu.d/luci-app-gatecert.json"))
acl = json.load(open(f"{app}/root/usr/share/rpcd/acl.d/luci-app-gatecert.json"))
errors = []
top = menu.get("admin/services/gatecert")
if not top or top["depends"]["acl"] != ["luci-app-gatecert"] or top["depends"]["uci"] != {"gatecert": True}:
    errors.append("admin/services/gatecert must depend on acl luci-app-gatecert and uci gatecert")
for path, entry in menu.items():
    if not path.startswith("admin/services/gatecert"):
        errors.append(f"{path}: outside admin/services/gatecert")
    if not isinstance(entry.get("title"), str) or not entry["title"]:
        errors.append(f"{path}: no title")
    a = entry.get("action", {})
    if a.get("type") == "view":
        f = f"{app}/htdocs/luci-static/resources/view/{a['path']}.js"
        if not os.path.isfile(f):
            errors.append(f"{path}: no view file {f}")
    elif a.get("type") != "firstchild":
        errors.append(f"{path}: action {a}")
if list(acl) != ["luci-app-gatecert"]:
    errors.append(f"ACL groups {list(acl)}")
g = acl["luci-app-gatecert"]
if set(g) != {"description", "read", "write"}:
    errors.append(f"ACL keys {sorted(g)}")
for mode in ("read", "write"):
    if set(g[mode]) != {"ubus", "uci"}:
        errors.append(f"{mode}: only ubus and uci, got {sorted(g[mode])} (no file, no exec)")
    if list(g[mode]["ubus"]) != ["gatecert"] or g[mode]["uci"] != ["gatecert"]:
        errors.append(f"{mode}: only ubus gatecert and uci gatecert")
reads, writes = set(g["read"]["ubus"]["gatecert"]), set(g["write"]["ubus"]["gatecert"])
if reads & writes:
    errors.append(f"methods in both read and write: {reads & writes}")
changing = {"token_add", "token_revoke", "leaf_revoke", "leaf_disable"}
if reads & changing:
    errors.append(f"read grants methods that change state: {reads & changing}")
listed = json.loads(subprocess.run(["sh", f"{app}/root/usr/libexec/rpcd/gatecert", "list"],
                                   capture_output=True, text=True, check=True,
                                   env={**os.environ, "JSHN": "tests/packaging/luci/jshn.sh"}).stdout)
if set(listed) != reads | writes:
    errors.append(f"plugin methods {sorted(listed)} != ACL methods {sorted(reads | writes)}")
# Every rpc.declare'd method of the views is granted.
import re
for v in os.listdir(f"{app}/htdocs/luci-static/resources/view/gatecert"):
    src = open(f"{app}/htdocs/luci-static/resources/view/gatecert/{v}").read()
    for m in re.findall(r"method: '([a-z_]+)'", src):
        if m not in reads | writes:
            errors.append(f"{v}: method {m} is not in the ACL")
# The settings view writes only options gatecert knows (unknown ones are config errors), each
# in its section type, as doc/gatecert.config.example documents them.
known, cur = {}, None
for line in open("doc/gatecert.config.example"):
    m = re.match(r"config (\w+) '", line)
    if m:
        cur = known.setdefault(m.group(1), set())
        continue
    m = re.match(r"\s*#?\s*(option|list) (\w+) ", line)
    if m and cur is not None:
        cur.add(m.group(2))
src = open(f"{app}/htdocs/luci-static/resources/view/gatecert/settings.js").read()
stype, used = None, 0
for m in re.finditer(r"m\.section\(form\.(NamedSection), '[\w-]+', '(\w+)'|m\.section\(form\.(TypedSection), '(\w+)'|s\.option\(form\.\w+, '(\w+)'", src):
    if m.group(2) or m.group(4):
        stype = m.group(2) or m.group(4)
        if stype not in known:
            errors.append(f"settings.js: unknown section type {stype}")
    elif stype in known:
        used += 1
        if m.group(5) not in known[stype]:
            errors.append(f"settings.js: option {m.group(5)} is not a {stype} option")
if used < 10:
    errors.append(f"settings.js: only {used} options found")
for e in errors:
    print("#", e)
sys.exit(1 if errors else 0)
PY

# 3. the rpcd plugin against the real binary
BIN=target/debug/gatecert
[ -x "$BIN" ] || cargo build --quiet || { echo "not ok - cargo build"; exit 1; }
mkdir -p "$T/state"
cat > "$T/gatecert.conf" <<CONF
config gatecert 'main'
	option state_dir '$T/state'
	option log 'stderr'
config ca 'local'
	list allow_suffix 'sensors.local'
	list allow_suffix 'gateway.local'
config certificate 'gateway'
	list domain 'gateway.local'
CONF
cat > "$T/gatecert" <<SH
#!/bin/sh
exec "$REPO/$BIN" --config "$T/gatecert.conf" "\$@"
SH
cat > "$T/logread" <<'SH'
#!/bin/sh
[ "$1 $2" = "-e gatecert" ] || exit 1
echo 'Dec  1 03:00:00 gw gatecert[812]: EST listening on [::]:8443'
SH
chmod +x "$T/gatecert" "$T/logread"
"$T/gatecert" ca init >/dev/null || echo "not ok - ca init"
call() { # call METHOD JSON
  printf '%s\n' "$2" | JSHN=tests/packaging/luci/jshn.sh GATECERT="$T/gatecert" LOGREAD="$T/logread" sh "$PLUGIN" call "$1"
}
call status '{}' > "$T/status.json"
eq "plugin status: gatecert.status/1" "gatecert.status/1" "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["schema"])' "$T/status.json")"
call token_add '{"device":"sensor-7","names":"sensor-7.sensors.local","ttl":"1d","uses":1}' > "$T/token_add.json"
eq "plugin token_add: bundle and QR matrix" "sensor-7 True" "$(python3 -c '
import json,sys; r=json.load(open(sys.argv[1])); b=r["bundle"]
print(b["device"], len(r["qr"]) >= 21 and all(len(x) == len(r["qr"]) for x in r["qr"]))' "$T/token_add.json")"
call token_add '{"device":"sensor-8","names":"sensor-8.sensors.local"}' > /dev/null
call token_revoke '{"device":"sensor-8"}' > "$T/revoke.json"
contains "plugin token_revoke" '"ok": true' "$(cat "$T/revoke.json")"
call tokens '{}' > "$T/tokens.json"
eq "plugin tokens: states, no secrets" "active revoked False" "$(python3 -c '
import json,sys; t=json.load(open(sys.argv[1]))["tokens"]; s=open(sys.argv[1]).read()
print(" ".join(sorted(x["state"] for x in t)), "hash" in s or "salt" in s)' "$T/tokens.json")"
call leaves '{}' > "$T/leaves.json"
eq "plugin leaves" '{"leaves":[]}' "$(cat "$T/leaves.json")"
call features '{}' > "$T/features.json"
contains "plugin features" '"leaf_revoke"' "$(cat "$T/features.json")"
call log '{"lines":50}' > "$T/log.json"
contains "plugin log: logread -e gatecert" 'EST listening' "$(cat "$T/log.json")"
for bad in '{"device":"--ttl","names":"x.sensors.local"}' '{"device":"s9","names":"--uses 9"}' \
           '{"device":"s9","names":"s9.sensors.local","ttl":"-1"}' '{"device":"s 9","names":"s9.sensors.local"}'; do
  contains "plugin refuses $bad" '"error"' "$(call token_add "$bad")"
done
contains "no token was made from a refused call" 'sensor-7' "$("$T/gatecert" token list)"
eq "... and only the good ones" "" "$("$T/gatecert" token list | grep -E '^(s9|--)' || true)"
contains "unknown method" '"error"' "$(call nope '{}')"
uci_json=$(python3 - <<'PY'
import json
# The package's default config as `ubus call uci get` would give it (section types and names).
import re
secs, cur = {}, None
for line in open("openwrt/gatecert/files/gatecert.config"):
    m = re.match(r"config (\w+) '([\w-]+)'", line)
    if m:
        cur = secs.setdefault(m.group(2), {".type": m.group(1), ".name": m.group(2)})
        continue
    m = re.match(r"\s+(option|list) (\w+) '([^']*)'", line)
    if m and cur is not None:
        if m.group(1) == "list":
            cur.setdefault(m.group(2), []).append(m.group(3))
        else:
            cur[m.group(2)] = m.group(3)
# The shipped config has no certificate section (acme-common's /etc/config/acme is imported);
# add one as LuCI's "Add" would, so the certificates table is rendered too.
secs.setdefault("gateway", {".type": "certificate", ".name": "gateway", "domain": ["gateway.lan"]})
print(json.dumps({"gatecert": secs}))
PY
)
python3 - "$T" "$uci_json" <<'PY'
import json, sys
t, uci = sys.argv[1], json.loads(sys.argv[2])
fx = {m: json.load(open(f"{t}/{m}.json")) for m in ("status", "token_add", "tokens", "leaves", "features", "log")}
fx["uci"] = uci
json.dump(fx, open(f"{t}/fixtures.json", "w"))
PY

# 4. the views in headless Chromium
CHROMIUM=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$CHROMIUM" ] || ! command -v zbarimg >/dev/null; then
  echo "#"
  echo "# SKIPPED: the LuCI views were NOT rendered: chromium and/or zbarimg are missing"
  echo "#          (apt-get install chromium zbar-tools)"
  echo "#"
  done_testing; exit
fi
chrome() { # chrome OUT_FLAG HTML
  timeout 60 "$CHROMIUM" --headless --no-sandbox --disable-gpu --disable-background-networking \
    --disable-component-update --disable-sync --no-first-run --user-data-dir="$T/chrome" \
    --hide-scrollbars --window-size=1100,1400 --virtual-time-budget=5000 "$1" "file://$2" 2>>"$OUT/chromium.log"
}
# Checks that views must pass, by view: text that must be in the rendered page.
declare -A must=(
  [status]='gatecert: status|Certificates|ca-intermediate|ca-root|data-state="missing"|needs attention|trusted|Time left'
  [leaves]='gatecert: leaves|No leaves yet'
  [tokens]='Provisioning bundle for sensor-7|data-state="active"|data-state="revoked"|id="gatecert-qr"'
  [settings]='data-section="main"|data-section="local"|data-section="est"|data-section="metrics"|data-sid="gateway"'
  [log]='EST listening'
)
printf '{"gatecert-device":"sensor-9","gatecert-names":"sensor-9.sensors.local"}' > "$T/prefill.json"
for v in status leaves tokens settings log; do
  action=; [ "$v" = tokens ] && action=handleAdd
  python3 tests/packaging/luci/page.py "$APP/htdocs/luci-static/resources/view/gatecert/$v.js" \
    "$T/fixtures.json" "$T/$v.html" "$action" "$T/prefill.json"
  dom=$(chrome --dump-dom "$T/$v.html")
  contains "$v view rendered" '<title>rendered</title>' "$dom"
  IFS='|' read -r -a needles <<< "${must[$v]}"
  for n in "${needles[@]}"; do contains "$v view shows $n" "$n" "$dom"; done
  if [ "$v" = tokens ]; then
    # The fixture's answer stands for the one token_add returns; the call carried the form.
    contains "tokens view called token_add with the form" \
      '{"method":"token_add","args":{"device":"sensor-9","names":"sensor-9.sensors.local","ttl":"7d","uses":1}}' "$dom"
  fi
  chrome --screenshot="$OUT/$v.png" "$T/$v.html" >/dev/null
  ok "$v screenshot saved" test -s "$OUT/$v.png"
done
decoded=$(zbarimg --quiet --raw -Sdisable -Sqrcode.enable "$OUT/tokens.png" 2>/dev/null)
eq "the QR code in the tokens screenshot decodes to the bundle" \
  "$(python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1]))["bundle"], sort_keys=True))' "$T/token_add.json")" \
  "$(printf '%s' "$decoded" | python3 -c 'import json,sys; print(json.dumps(json.load(sys.stdin), sort_keys=True))' 2>/dev/null)"
done_testing
