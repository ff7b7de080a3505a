# Lightwhale's fragment of the Nix path's kernel configuration: nixpkgs' 6.12 LTS with its
# common configuration (pkgs/os-specific/linux/kernel/common-config.nix), plus these.
# Passed as `structuredExtraConfig`; an option nixpkgs already sets differently needs
# lib.mkForce. The Debian path uses Debian's signed kernel instead.
{ lib }:
let
  inherit (lib.kernel) yes module freeform;
in
{
  # What stage 1 needs to mount the image: it loads loop and squashfs from the initramfs
  # (modules/base/module.toml [initramfs]), and the squashfs is zstd-compressed.
  BLK_DEV_LOOP = module;
  SQUASHFS = module;
  SQUASHFS_ZSTD = yes;
  # nixpkgs compresses modules with xz; the init hands them to finit_module compressed and
  # the kernel unpacks them.
  MODULE_DECOMPRESS = yes;
  # Firmware is copied from linux-firmware as it is packaged; compressed files (.zst, .xz)
  # load too, as on Debian's kernel.
  FW_LOADER_COMPRESS = yes;
  FW_LOADER_COMPRESS_XZ = yes;
  FW_LOADER_COMPRESS_ZSTD = yes;

  # Hardening. Landlock and seccomp confine the init's device probe and the services;
  # lockdown backs `lockdown=integrity` on the command line (nixpkgs turns the LSM off);
  # Yama for ptrace_scope; AppArmor so Docker applies its docker-default profile.
  SECURITY_LANDLOCK = yes;
  SECCOMP_FILTER = yes;
  SECURITY_LOCKDOWN_LSM = lib.mkForce yes;
  SECURITY_LOCKDOWN_LSM_EARLY = yes;
  SECURITY_YAMA = yes;
  SECURITY_APPARMOR = yes;
  LSM = lib.mkForce (freeform "landlock,lockdown,yama,apparmor,bpf");
}
