# shellcheck shell=sh
# A stand-in for OpenWrt's /usr/share/libubox/jshn.sh (libubox; not packaged by Debian) for the
# functions the rpcd plugin uses, with the same calling conventions: json_init, json_add_string,
# json_add_int, json_add_boolean (0/1 -> false/true), json_add_object, json_close_object,
# json_dump (one line), json_load, json_get_var VAR KEY (top-level keys). Python builds and
# reads the JSON.

json_init() { _J_OPS=''; }
_j_op() {
	_J_OPS="${_J_OPS}$(printf '%s\t%s\t%s' "$1" "$2" "$3" | base64 -w0)
"
}
json_add_string() { _j_op s "$1" "$2"; }
json_add_int() { _j_op i "$1" "$2"; }
json_add_boolean() { _j_op b "$1" "$2"; }
json_add_object() { _j_op o "$1" ""; }
json_close_object() { _j_op c "" ""; }
json_dump() {
	printf '%s' "$_J_OPS" | python3 -c '
import base64, json, sys
stack = [{}]
for line in sys.stdin.read().split():
    op, key, val = base64.b64decode(line).decode().split("\t", 2)
    if op == "o":
        stack[-1][key] = {}
        stack.append(stack[-1][key])
    elif op == "c":
        stack.pop()
    else:
        stack[-1][key] = val if op == "s" else int(val or 0) if op == "i" else val == "1"
print(json.dumps(stack[0]))'
}
json_load() { _J_IN=$1; }
json_get_var() {
	_j_v=$(printf '%s' "$_J_IN" | python3 -c '
import json, sys
v = json.load(sys.stdin).get(sys.argv[1])
print("" if v is None else v)' "$2")
	eval "$1=\$_j_v"
}
