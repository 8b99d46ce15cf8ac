// Stand-ins for LuCI's runtime, just enough to load and render the luci-app-gatecert views in
// a browser without LuCI: the globals E() and _(), String.prototype.format, and the modules
// view, rpc (answers from window.FIXTURES by method, recording each call in window.__calls),
// ui (modals and notifications as plain elements), form (Map/NamedSection/TypedSection with
// Value/ListValue/Flag/DynamicList, showing the values of FIXTURES.uci). A view file is loaded
// as LuCI loads it: its source becomes the body of a function whose arguments are the modules
// its 'require' lines name.
'use strict';
(function() {
	String.prototype.format = function() {
		var a = arguments, i = 0;
		return this.replace(/%[sd]/g, function() { return String(a[i++]); });
	};
	window._ = function(s) { return s; };
	window.E = function(tag, attrs, children) {
		if (attrs == null || Array.isArray(attrs) || typeof attrs !== 'object' || attrs instanceof Node) {
			children = attrs;
			attrs = {};
		}
		var el = document.createElement(tag);
		Object.keys(attrs).forEach(function(k) {
			var v = attrs[k];
			if (typeof v === 'function') el.addEventListener(k, v);
			else if (v != null) el.setAttribute(k, v);
		});
		(function add(c) {
			if (c == null || c === '') return;
			if (Array.isArray(c)) c.forEach(add);
			else if (c instanceof Node) el.appendChild(c);
			else el.appendChild(document.createTextNode(String(c)));
		})(children);
		return el;
	};

	var calls = window.__calls = [];
	var rpc = {
		declare: function(d) {
			return function() {
				var args = {}, given = arguments;
				(d.params || []).forEach(function(p, i) { args[p] = given[i]; });
				calls.push({ method: d.method, args: args });
				var r = window.FIXTURES[d.method];
				var keys = Object.keys(d.expect || {});
				if (keys.length == 1 && keys[0] !== '')
					r = (r && r[keys[0]] !== undefined) ? r[keys[0]] : d.expect[keys[0]];
				return Promise.resolve(r);
			};
		}
	};

	var ui = {
		showModal: function(title, children) {
			var m = E('div', { 'id': 'modal', 'class': 'modal' }, [ E('h4', title) ].concat(children));
			document.body.insertBefore(m, document.body.firstChild);
			return m;
		},
		hideModal: function() { var m = document.getElementById('modal'); if (m) m.remove(); },
		addNotification: function(title, children, cls) {
			document.body.insertBefore(E('div', { 'class': 'alert-message ' + (cls || '') }, children), document.body.firstChild);
		}
	};

	var view = {
		extend: function(o) {
			return Object.assign({ load: function() { return null; } }, o);
		}
	};

	function uciSections(config) { return (window.FIXTURES.uci || {})[config] || {}; }
	function Option(kind, name, title) {
		this.kind = kind; this.name = name; this.title = title; this.values = [];
	}
	Option.prototype.value = function(v) { this.values.push(v); };
	Option.prototype.render = function(sid, sec) {
		var v = sec[this.name], shown;
		if (v == null) v = this.default;
		if (this.kind == 'ListValue')
			shown = E('select', { 'name': sid + '.' + this.name }, this.values.map(function(x) {
				return E('option', x == v ? { 'selected': 'selected' } : {}, x);
			}));
		else if (this.kind == 'Flag')
			shown = E('input', { 'type': 'checkbox', 'name': sid + '.' + this.name, 'checked': v == '1' ? 'checked' : null });
		else
			shown = E('input', { 'type': 'text', 'name': sid + '.' + this.name, 'placeholder': this.placeholder || '',
				'value': Array.isArray(v) ? v.join(' ') : (v || '') });
		return E('div', { 'class': 'cbi-value' }, [ E('label', { 'class': 'cbi-value-title' }, this.title), shown ]);
	};
	function Section(kind, map, a, b, title) {
		this.kind = kind; this.map = map; this.options = []; this.title = title;
		if (kind == 'NamedSection') { this.sid = a; this.type = b; } else { this.type = a; this.title = b; }
	}
	Section.prototype.option = function(cls, name, title) {
		var o = new Option(cls.kind, name, title);
		this.options.push(o);
		return o;
	};
	Section.prototype.render = function() {
		var all = uciSections(this.map.config), self = this;
		var sids = this.kind == 'NamedSection' ? [ this.sid ] :
			Object.keys(all).filter(function(s) { return all[s]['.type'] == self.type; });
		return E('fieldset', { 'class': 'cbi-section', 'data-section': this.kind == 'NamedSection' ? this.sid : '@' + this.type },
			[ E('legend', this.title) ].concat(sids.map(function(sid) {
				var sec = all[sid] || {};
				return E('div', { 'class': 'cbi-section-node', 'data-sid': sid }, [ self.kind == 'TypedSection' ? E('h4', sid) : '' ]
					.concat(self.options.map(function(o) { return o.render(sid, sec); })));
			})));
	};
	var form = {
		Map: function(config, title, desc) {
			this.config = config; this.title = title; this.desc = desc; this.sections = [];
		},
		NamedSection: { kind: 'NamedSection' },
		TypedSection: { kind: 'TypedSection' },
		Value: { kind: 'Value' }, ListValue: { kind: 'ListValue' }, Flag: { kind: 'Flag' },
		DynamicList: { kind: 'DynamicList' }
	};
	form.Map.prototype.section = function(cls, a, b, title) {
		var s = new Section(cls.kind, this, a, b, title);
		this.sections.push(s);
		return s;
	};
	form.Map.prototype.render = function() {
		return Promise.resolve(E('div', { 'class': 'cbi-map', 'data-config': this.config },
			[ E('h2', this.title), E('p', this.desc) ].concat(this.sections.map(function(s) { return s.render(); }))));
	};

	var modules = { view: view, rpc: rpc, ui: ui, form: form };

	// Loads SOURCE as LuCI does, renders it into #maincontent, then runs the view's method
	// ACTION (e.g. handleAdd) if given; the page title says when it is done, or what failed.
	window.renderView = function(source, action, prefill) {
		var wanted = [];
		source.replace(/^'require ([a-z]+)';$/mg, function(_, m) { wanted.push(m); });
		var v;
		try {
			v = Function.apply(null, wanted.concat([ source ])).apply(null, wanted.map(function(m) { return modules[m]; }));
		} catch (e) {
			document.title = 'error: ' + e;
			return;
		}
		Promise.resolve(v.load()).then(function(d) { return v.render(d); }).then(function(node) {
			document.getElementById('maincontent').appendChild(node);
			Object.keys(prefill || {}).forEach(function(id) {
				var el = document.getElementById(id);
				if (el) el.value = prefill[id];
			});
			return action ? v[action]() : null;
		}).then(function() {
			// The calls the view made, for the test to read in the dumped DOM.
			document.body.appendChild(E('pre', { 'id': 'rpc-calls' }, JSON.stringify(calls)));
			document.title = 'rendered';
		}).catch(function(e) {
			document.title = 'error: ' + e;
		});
	};
})();
