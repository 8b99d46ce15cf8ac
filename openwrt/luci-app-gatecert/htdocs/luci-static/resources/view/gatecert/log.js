'use strict';
'require view';
'require rpc';

// The service's log lines (`logread -e gatecert`, the last 200).

var callLog = rpc.declare({ object: 'gatecert', method: 'log', params: [ 'lines' ], expect: { log: '' } });

return view.extend({
	load: function() {
		return callLog(200);
	},

	render: function(log) {
		return E('div', { 'class': 'cbi-map' }, [
			E('h2', _('gatecert: log')),
			E('textarea', { 'id': 'gatecert-log', 'style': 'width:100%', 'rows': 30, 'readonly': 'readonly', 'wrap': 'off' }, log || _('No log lines from gatecert'))
		]);
	},

	handleSaveApply: null,
	handleSave: null,
	handleReset: null
});
