# nooelint: oelint.var.bbclassextend - a target daemon: no -native or -nativesdk use
SUMMARY = "ACME client and local issuing CA (EST) for IoT gateways"
DESCRIPTION = "gatecert keeps the gateway's TLS certificates valid over ACME (RFC 8555) and \
               runs a small issuing CA that enrolls leaf devices over EST (RFC 7030)."
# nooelint: oelint.vars.homepageping - a network check; the lint must not depend on the network
HOMEPAGE = "https://github.com/gatecert/gatecert"
BUGTRACKER = "https://github.com/gatecert/gatecert/issues"
SECTION = "net"
CVE_PRODUCT = "gatecert"
# Every licence linked into the binary: gatecert (Apache-2.0); ring (Apache-2.0 & ISC);
# rustls-webpki, untrusted, and libloading with the pkcs11 feature (ISC); subtle (BSD-3-Clause); bytes, data-encoding, lexopt, nom, pem, qrcodegen, zmij
# (MIT); the other crates are MIT | Apache-2.0 (tests/packaging/licenses.sh checks the list).
LICENSE = "Apache-2.0 & ISC & MIT & BSD-3-Clause"
LIC_FILES_CHKSUM = "file://LICENSE;md5=3b83ef96387f14655fc854ddc3c6bd57 \
                    file://${COMMON_LICENSE_DIR}/ISC;md5=f3b90e78ea0cffb20bf5cca7947a896d \
                    file://${COMMON_LICENSE_DIR}/MIT;md5=0835ade698e0bcf8506ecda2f7b4f302 \
                    file://${COMMON_LICENSE_DIR}/BSD-3-Clause;md5=550794465ba0ec5312d6919e203a55f9 \
                    "

# destsuffix=${BP} keeps S at its default on every release (UNPACKDIR/${BP}).
SRC_URI = "git://github.com/gatecert/gatecert.git;protocol=https;branch=main;destsuffix=${BP} \
           file://gatecert.init \
           "
# The commit the recipe installs from: every file do_install takes from ${S} exists there, and
# every crate of its Cargo.lock is in gatecert-crates.inc (tests/packaging/yocto.sh checks both).
# On release: the v${PV} commit, then scripts/gen-crates-inc.py.
SRCREV = "069572a55469d3a571dbc03253308cfcd88405e5"

inherit cargo cargo-update-recipe-crates systemd update-rc.d

require ${BPN}-crates.inc

# Cargo.toml's release profile strips the binary; here the build system strips it and splits
# the debug info into ${PN}-dbg itself, and a binary that comes already stripped is an
# ERROR_QA "already-stripped".
CARGO_BUILD_FLAGS:append = " --config profile.release.strip=false"

# Keys in a TPM or HSM through a PKCS#11 module (dlopen()ed at run time; glibc or dynamic musl).
# nooelint: oelint.vars.mispell.unknown - cargo.bbclass's list of features (cargo --features)
CARGO_FEATURES = "pkcs11"

PACKAGES =+ "${PN}-cron"

SYSTEMD_SERVICE:${PN} = "gatecert.service"
SYSTEMD_AUTO_ENABLE:${PN} = "enable"

INITSCRIPT_NAME = "gatecert"
INITSCRIPT_PARAMS = "defaults 90 10"

do_install:append() {
    if ${@bb.utils.contains('DISTRO_FEATURES', 'systemd', 'true', 'false', d)}; then
        install -d ${D}${systemd_system_unitdir}
        install -m 0644 ${S}/init/gatecert.service ${S}/init/gatecert-renew.service \
            ${S}/init/gatecert-renew.timer ${D}${systemd_system_unitdir}/
    fi
    if ${@bb.utils.contains('DISTRO_FEATURES', 'sysvinit', 'true', 'false', d)}; then
        install -d ${D}${sysconfdir}/init.d
        install -m 0755 ${UNPACKDIR}/gatecert.init ${D}${sysconfdir}/init.d/gatecert
    fi
    # Renew-only mode from cron (${PN}-cron), at a per-device minute chosen on first boot.
    install -d ${D}${libexecdir}/gatecert
    install -m 0755 ${S}/init/gatecert-cron.sh ${D}${libexecdir}/gatecert/
    install -m 0644 ${S}/init/gatecert.cron ${D}${libexecdir}/gatecert/
    install -d -m 0755 ${D}${sysconfdir}/gatecert
    install -m 0600 ${S}/init/gatecert.conf ${D}${sysconfdir}/gatecert/gatecert.conf
}

# Not a task but the postinst of ${PN}-cron: the '-' is the package name's.
# nooelint: oelint.task.dash,oelint.task.docstrings
pkg_postinst_ontarget:${PN}-cron() {
    ${libexecdir}/gatecert/gatecert-cron.sh ${sysconfdir}/cron.d/gatecert
}

pkg_postrm:${PN}-cron() {
    rm -f $D${sysconfdir}/cron.d/gatecert
}

FILES:${PN} += "${systemd_system_unitdir}/gatecert-renew.service ${systemd_system_unitdir}/gatecert-renew.timer"
FILES:${PN}-cron += "${libexecdir}/gatecert"
CONFFILES:${PN} = "${sysconfdir}/gatecert/gatecert.conf"
RDEPENDS:${PN} = "ca-certificates"
RDEPENDS:${PN}-cron = "${PN} cronie"
