SUMMARY = "ACME client and local issuing CA (EST) for IoT gateways"
DESCRIPTION = "gatecert keeps the gateway's TLS certificates valid over ACME (RFC 8555) and \
runs a small issuing CA that enrolls leaf devices over EST (RFC 7030). One static binary."
HOMEPAGE = "https://github.com/gatecert/gatecert"
SECTION = "net"
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://${COMMON_LICENSE_DIR}/Apache-2.0;md5=89aea4e17d99a7cacdbeed46a0096b10"

# destsuffix=${BP} keeps S at its default on every release (WORKDIR or UNPACKDIR / ${BP}).
SRC_URI = "git://github.com/gatecert/gatecert.git;protocol=https;branch=main;destsuffix=${BP}"
# The commit of the v${PV} release; gatecert-crates.inc must come from the same Cargo.lock
# (scripts/gen-crates-inc.py, or bitbake -c update_crates gatecert).
SRCREV = "422b0dd4fc993bfdb706d231d13671a49a841af5"

inherit cargo cargo-update-recipe-crates systemd

require ${BPN}-crates.inc

SYSTEMD_SERVICE:${PN} = "gatecert.service"
SYSTEMD_AUTO_ENABLE:${PN} = "enable"

do_install:append() {
    if ${@bb.utils.contains('DISTRO_FEATURES', 'systemd', 'true', 'false', d)}; then
        install -d ${D}${systemd_system_unitdir}
        install -m 0644 ${S}/init/gatecert.service ${S}/init/gatecert-renew.service \
            ${S}/init/gatecert-renew.timer ${D}${systemd_system_unitdir}/
    else
        # No systemd: renew from cron, at a per-device minute chosen on first boot.
        install -d ${D}${libexecdir}/gatecert
        install -m 0755 ${S}/init/gatecert-cron.sh ${D}${libexecdir}/gatecert/
        install -m 0644 ${S}/init/gatecert.cron ${D}${libexecdir}/gatecert/
    fi
    install -d -m 0755 ${D}${sysconfdir}/gatecert
    install -m 0600 ${S}/init/gatecert.conf ${D}${sysconfdir}/gatecert/gatecert.conf
}

pkg_postinst_ontarget:${PN}() {
    if [ -x ${libexecdir}/gatecert/gatecert-cron.sh ] && [ -d ${sysconfdir}/cron.d ]; then
        ${libexecdir}/gatecert/gatecert-cron.sh ${sysconfdir}/cron.d/gatecert
    fi
}

FILES:${PN} += "${systemd_system_unitdir}/gatecert-renew.service ${systemd_system_unitdir}/gatecert-renew.timer"
CONFFILES:${PN} = "${sysconfdir}/gatecert/gatecert.conf"
RDEPENDS:${PN} = "ca-certificates"
