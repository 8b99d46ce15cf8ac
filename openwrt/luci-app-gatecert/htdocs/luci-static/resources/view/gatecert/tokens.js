'use strict';
'require view';
'require rpc';
'require ui';

// Bootstrap tokens: add one (the reply is the provisioning bundle and its QR matrix from
// `gatecert token add ... --qr-matrix`, drawn here on a canvas: no QR encoder in the browser),
// list them (`token list --json`, no secrets), revoke one. The token is shown once, in the
// dialog; it is not kept anywhere in the page after the dialog closes.

var callTokens = rpc.declare({ object: 'gatecert', method: 'tokens', expect: { tokens: [] } });
var callAdd = rpc.declare({ object: 'gatecert', method: 'token_add', params: [ 'device', 'names', 'ttl', 'uses' ] });
var callRevoke = rpc.declare({ object: 'gatecert', method: 'token_revoke', params: [ 'device' ] });

var SCALE = 4, QUIET = 4;

// The QR matrix (rows of '0'/'1') on a canvas: dark modules black on white, with the quiet zone.
function qrCanvas(rows) {
	var n = rows.length, side = (n + 2 * QUIET) * SCALE;
	var c = E('canvas', { 'width': side, 'height': side, 'id': 'gatecert-qr' });
	var g = c.getContext('2d');
	g.fillStyle = '#fff';
	g.fillRect(0, 0, side, side);
	g.fillStyle = '#000';
	for (var y = 0; y < n; y++)
		for (var x = 0; x < n; x++)
			if (rows[y].charAt(x) == '1')
				g.fillRect((x + QUIET) * SCALE, (y + QUIET) * SCALE, SCALE, SCALE);
	return c;
}

return view.extend({
	load: function() {
		return callTokens();
	},

	handleAdd: function() {
		var val = function(id) { return document.getElementById(id).value.trim(); };
		var uses = parseInt(val('gatecert-uses'), 10);
		return callAdd(val('gatecert-device'), val('gatecert-names'), val('gatecert-ttl'), isNaN(uses) ? 1 : uses).then(function(r) {
			if (!r || r.error || !r.bundle) {
				ui.addNotification(null, E('p', (r && r.error) || _('gatecert gave no bundle')), 'error');
				return;
			}
			ui.showModal(_('Provisioning bundle for %s').format(r.bundle.device), [
				E('p', _('Shown only now: scan it with the sensor, or copy the JSON. The token expires %s.').format(r.bundle.expires)),
				qrCanvas(r.qr),
				E('textarea', { 'id': 'gatecert-bundle', 'style': 'width:100%', 'rows': 6, 'readonly': 'readonly' }, JSON.stringify(r.bundle)),
				E('div', { 'class': 'right' }, E('button', { 'class': 'cbi-button', 'click': function() { ui.hideModal(); location.reload(); } }, _('Close')))
			]);
		});
	},

	handleRevoke: function(device) {
		return callRevoke(device).then(function(r) {
			if (r && r.error) ui.addNotification(null, E('p', r.error), 'error');
			else location.reload();
		});
	},

	render: function(tokens) {
		var self = this;
		var field = function(id, label, ph, value) {
			return E('div', { 'class': 'cbi-value' }, [
				E('label', { 'class': 'cbi-value-title', 'for': id }, label),
				E('div', { 'class': 'cbi-value-field' }, E('input', { 'id': id, 'type': 'text', 'placeholder': ph, 'value': value || '' }))
			]);
		};
		var rows = (tokens || []).map(function(t) {
			return E('tr', { 'class': 'tr', 'data-state': t.state }, [
				E('td', { 'class': 'td' }, t.device), E('td', { 'class': 'td' }, (t.names || []).join(', ')),
				E('td', { 'class': 'td' }, new Date(t.expires * 1000).toISOString().replace('.000Z', 'Z')),
				E('td', { 'class': 'td' }, String(t.uses_left)), E('td', { 'class': 'td' }, t.state),
				E('td', { 'class': 'td' }, t.state == 'revoked' ? '' : E('button', { 'class': 'cbi-button cbi-button-remove', 'click': function() { return self.handleRevoke(t.device); } }, _('Revoke')))
			]);
		});
		return E('div', { 'class': 'cbi-map' }, [
			E('h2', _('gatecert: bootstrap tokens')),
			E('div', { 'class': 'cbi-section' }, [
				E('h3', _('New token')),
				field('gatecert-device', _('Device'), 'sensor-1'),
				field('gatecert-names', _('Names'), 'sensor-1.local'),
				field('gatecert-ttl', _('Valid for'), '7d', '7d'),
				field('gatecert-uses', _('Uses'), '1', '1'),
				E('button', { 'class': 'cbi-button cbi-button-add', 'id': 'gatecert-add', 'click': function() { return self.handleAdd(); } }, _('Add token and show its bundle'))
			]),
			E('h3', _('Tokens')),
			E('table', { 'class': 'table', 'id': 'gatecert-tokens' }, [
				E('tr', { 'class': 'tr table-titles' }, [
					E('th', { 'class': 'th' }, _('Device')), E('th', { 'class': 'th' }, _('Names')),
					E('th', { 'class': 'th' }, _('Expires')), E('th', { 'class': 'th' }, _('Uses left')),
					E('th', { 'class': 'th' }, _('State')), E('th', { 'class': 'th' }, '')
				])
			].concat(rows))
		]);
	},

	handleSaveApply: null,
	handleSave: null,
	handleReset: null
});
