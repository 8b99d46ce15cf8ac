'use strict';
'require view';
'require rpc';
'require ui';

// gatecert status: `gatecert status --json` (schema gatecert.status/1, doc/status-schema.md)
// through the rpcd plugin: certificates with the time they have left, upstream health, clock
// trust, the local CA, leaf and token counts, and what needs attention.

var callStatus = rpc.declare({ object: 'gatecert', method: 'status', expect: { '': {} } });

function timeLeft(secs) {
	if (secs == null) return '-';
	var neg = secs < 0, s = Math.abs(secs);
	var d = Math.floor(s / 86400), h = Math.floor(s % 86400 / 3600), m = Math.floor(s % 3600 / 60);
	var t = d > 0 ? d + 'd ' + h + 'h' : h > 0 ? h + 'h ' + m + 'm' : m + 'm';
	return neg ? _('expired %s ago').format(t) : t;
}

function date(unix) {
	return unix == null ? '-' : new Date(unix * 1000).toISOString().replace('.000Z', 'Z');
}

function row(label, value) {
	return E('tr', { 'class': 'tr' }, [ E('td', { 'class': 'td left', 'width': '33%' }, label), E('td', { 'class': 'td left' }, value) ]);
}

return view.extend({
	load: function() {
		return callStatus();
	},

	render: function(st) {
		if (!st || !st.schema)
			return E('div', { 'class': 'cbi-map' }, [ E('h2', _('gatecert')), E('p', { 'class': 'alert-message warning' }, (st && st.error) || _('No status from gatecert')) ]);

		var clock = st.clock.trusted ? (st.clock.ntp_synced ? _('trusted (NTP synchronised)') : _('trusted')) : _('untrusted: %s').format(st.clock.reason);
		var up = st.upstream.state == 'n/a' ? _('n/a (no leaf broker)') : st.upstream.state + (st.upstream.last_error ? ' (' + st.upstream.last_error + ')' : '');
		var ca = st.ca.present ? _('present') : (st.ca.error ? _('missing: %s').format(st.ca.error) : _('not used'));

		var summary = E('table', { 'class': 'table', 'id': 'gatecert-summary' }, [
			row(_('Health'), st.healthy ? _('healthy') : _('needs attention')),
			row(_('Clock'), clock),
			row(_('Upstream'), up),
			row(_('Local CA'), ca),
			row(_('Leaves'), _('%d (local %d, interim %d, upstream %d); expired %d').format(st.leaves.total, st.leaves.local, st.leaves.interim, st.leaves.upstream, st.leaves.expired)),
			row(_('Tokens'), _('active %d, expired %d, exhausted %d, revoked %d').format(st.tokens.active, st.tokens.expired, st.tokens.exhausted, st.tokens.revoked))
		]);

		var certs = E('table', { 'class': 'table', 'id': 'gatecert-certificates' }, [
			E('tr', { 'class': 'tr table-titles' }, [
				E('th', { 'class': 'th' }, _('Name')), E('th', { 'class': 'th' }, _('Kind')),
				E('th', { 'class': 'th' }, _('State')), E('th', { 'class': 'th' }, _('Not after')),
				E('th', { 'class': 'th' }, _('Time left')), E('th', { 'class': 'th' }, _('Next renewal')),
				E('th', { 'class': 'th' }, _('Last error'))
			])
		].concat((st.certificates || []).map(function(c) {
			return E('tr', { 'class': 'tr', 'data-state': c.state }, [
				E('td', { 'class': 'td' }, c.name), E('td', { 'class': 'td' }, c.kind),
				E('td', { 'class': 'td' }, c.state), E('td', { 'class': 'td' }, date(c.not_after)),
				E('td', { 'class': 'td' }, timeLeft(c.seconds_left)),
				E('td', { 'class': 'td' }, c.next_renewal == null ? _('manual') : date(c.next_renewal)),
				E('td', { 'class': 'td' }, c.last_error || '-')
			]);
		})));

		return E('div', { 'class': 'cbi-map' }, [
			E('h2', _('gatecert: status')),
			st.attention.length ? E('ul', { 'class': 'alert-message warning', 'id': 'gatecert-attention' },
				st.attention.map(function(a) { return E('li', a); })) : '',
			summary,
			E('h3', _('Certificates')),
			certs
		]);
	},

	handleSaveApply: null,
	handleSave: null,
	handleReset: null
});
