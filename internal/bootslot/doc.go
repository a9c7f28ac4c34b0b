// Package bootslot is the A/B boot convention of a cloudbox boot partition,
// shared by the image builder (which lays it out), the qemu launcher (which
// plays the firmware) and the appliance (which installs updates into it).
//
// It follows the Raspberry Pi firmware: each root slot has its own boot
// files (kernel, device trees, cmdline.txt) under a directory, the slot's
// os_prefix ("a/" for partition 2, "b/" for partition 3). config.txt names
// the committed slot's prefix. tryboot.txt names the slot under trial, with
// cmdline=cmdline-trial.txt (the slot's command line plus TrialArg), and the
// firmware reads it instead of config.txt for one boot only when the
// one-shot tryboot flag is set: on a Pi by `reboot "0 tryboot"` (a flag in
// the firmware's mailbox that a reset clears), under qemu by TryFlagFile,
// which the launcher consumes. A trial boot that does not commit (rewrite
// config.txt) is reset and the firmware starts the committed slot again.
//
// Firmware files (bootcode.bin, start*.elf) and config.txt itself are not
// A/B: a release does not replace them. It does not read or write file
// systems; the callers do.
package bootslot
