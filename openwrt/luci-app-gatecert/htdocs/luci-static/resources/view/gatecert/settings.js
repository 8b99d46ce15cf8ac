'use strict';
'require view';
'require form';

// The main settings of /etc/config/gatecert as a form.Map on 'gatecert' with its named
// sections (README: Configuration reference has every option). Save & Apply sends
// config.change, on which procd reloads the service.

return view.extend({
	render: function() {
		var m, s, o;

		m = new form.Map('gatecert', _('gatecert: settings'),
			_('The gateway\'s certificates over ACME, and the local CA that issues leaf sensors\' certificates over EST.'));

		s = m.section(form.NamedSection, 'main', 'gatecert', _('General'));
		o = s.option(form.Value, 'state_dir', _('State directory'));
		o.placeholder = '/etc/gatecert';
		o = s.option(form.ListValue, 'log_level', _('Log level'));
		o.value('error'); o.value('warn'); o.value('info'); o.value('debug');
		o.default = 'info';
		o = s.option(form.Value, 'alert_days', _('Warn days before expiry'));
		o.datatype = 'uinteger'; o.placeholder = '30';

		s = m.section(form.TypedSection, 'certificate', _('Gateway certificates'),
			_('Without an ACME directory the local CA issues the certificate.'));
		s.anonymous = false; s.addremove = true;
		o = s.option(form.Value, 'directory', _('ACME directory URL'));
		o.placeholder = 'https://acme-v02.api.letsencrypt.org/directory';
		o = s.option(form.Value, 'email', _('Account e-mail'));
		o = s.option(form.DynamicList, 'domain', _('Domains'));
		o = s.option(form.DynamicList, 'ip', _('IP addresses'));
		o.datatype = 'ipaddr';
		o = s.option(form.ListValue, 'challenge', _('Challenge'));
		o.value('http-01'); o.value('tls-alpn-01'); o.value('dns-01');
		o.default = 'http-01';

		s = m.section(form.NamedSection, 'local', 'ca', _('Local CA'));
		o = s.option(form.Value, 'lifetime', _('Leaf lifetime'));
		o.placeholder = '24h';
		o = s.option(form.Value, 'max_lifetime', _('Longest leaf lifetime'));
		o.placeholder = '7d';
		o = s.option(form.DynamicList, 'allow_suffix', _('Allowed DNS suffixes'));
		o = s.option(form.DynamicList, 'allow_ip', _('Allowed IP ranges'));
		o.datatype = 'cidr';

		s = m.section(form.NamedSection, 'est', 'est', _('EST listener'));
		o = s.option(form.Flag, 'enabled', _('Enabled'));
		o.default = '1'; o.rmempty = false;
		o = s.option(form.Value, 'listen', _('Listen address'));
		o.placeholder = '[::]:8443';

		s = m.section(form.NamedSection, 'metrics', 'metrics', _('Metrics'));
		o = s.option(form.Value, 'listen', _('Prometheus listener (loopback)'));
		o.placeholder = '127.0.0.1:9469';

		return m.render();
	}
});
