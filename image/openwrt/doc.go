// Package openwrt builds cloudbox for OpenWrt routers: cloudboxd compiled
// with the router profile for a router board (see package boards), and an
// installable .ipk package of OpenWrt 23.05 around it with a procd init
// script, a UCI config file mapped onto cloudboxd's flags, a one-time
// firewall and dnsmasq setup, and maintainer scripts that keep the box's
// state in /etc/cloudbox across upgrades and remove it with the package.
//
// The .ipk format is the one OpenWrt's scripts/ipkg-build writes and opkg
// reads: a gzip-compressed tar (GNU format, numeric owners) of
// ./debian-binary ("2.0"), ./data.tar.gz (the files, from "./") and
// ./control.tar.gz (control, conffiles, postinst, prerm), in that order.
// Every timestamp is SOURCE_DATE_EPOCH and gzip headers carry no name or
// time, so the same sources, toolchain and settings give a byte-identical
// package. The apk format of OpenWrt 24.10 and later (apk-tools v3, ADB) is
// not written.
//
// The builder is a library; `cloudbox package` is a thin CLI over it. It
// does not talk to routers or install anything.
package openwrt
