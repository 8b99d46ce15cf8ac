'use strict';
'require view';
'require rpc';
'require ui';

// The leaf inventory (`gatecert leaves --json`), with revoke/disable when this gatecert has them.

var callLeaves = rpc.declare({ object: 'gatecert', method: 'leaves', expect: { leaves: [] } });
var callFeatures = rpc.declare({ object: 'gatecert', method: 'features', expect: { '': {} } });
var callRevoke = rpc.declare({ object: 'gatecert', method: 'leaf_revoke', params: [ 'device' ] });
var callDisable = rpc.declare({ object: 'gatecert', method: 'leaf_disable', params: [ 'device' ] });

function act(fn, device, what) {
	return function() {
		if (!confirm(_('%s the certificate of %s?').format(what, device)))
			return;
		return fn(device).then(function(r) {
			if (r && r.error) ui.addNotification(null, E('p', r.error), 'error');
			else location.reload();
		});
	};
}

return view.extend({
	load: function() {
		return Promise.all([ callLeaves(), callFeatures() ]);
	},

	render: function(data) {
		var leaves = data[0] || [], feat = data[1] || {};
		var rows = leaves.map(function(l) {
			var buttons = [];
			if (feat.leaf_revoke)
				buttons.push(E('button', { 'class': 'cbi-button cbi-button-remove', 'click': act(callRevoke, l.device, _('Revoke')) }, _('Revoke')));
			if (feat.leaf_disable)
				buttons.push(E('button', { 'class': 'cbi-button', 'click': act(callDisable, l.device, _('Disable')) }, _('Disable')));
			return E('tr', { 'class': 'tr' }, [
				E('td', { 'class': 'td' }, l.device), E('td', { 'class': 'td' }, (l.names || []).join(', ')),
				E('td', { 'class': 'td' }, l.serial), E('td', { 'class': 'td' }, new Date(l.not_after * 1000).toISOString().replace('.000Z', 'Z')),
				E('td', { 'class': 'td' }, l.source), E('td', { 'class': 'td' }, buttons)
			]);
		});
		return E('div', { 'class': 'cbi-map' }, [
			E('h2', _('gatecert: leaves')),
			E('table', { 'class': 'table', 'id': 'gatecert-leaves' }, [
				E('tr', { 'class': 'tr table-titles' }, [
					E('th', { 'class': 'th' }, _('Device')), E('th', { 'class': 'th' }, _('Names')),
					E('th', { 'class': 'th' }, _('Serial')), E('th', { 'class': 'th' }, _('Not after')),
					E('th', { 'class': 'th' }, _('Source')), E('th', { 'class': 'th' }, '')
				])
			].concat(rows.length ? rows : [ E('tr', { 'class': 'tr' }, E('td', { 'class': 'td', 'colspan': 6 }, _('No leaves yet'))) ]))
		]);
	},

	handleSaveApply: null,
	handleSave: null,
	handleReset: null
});
