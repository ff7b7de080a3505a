# A STAND-IN for nixpkgs, for evaluating Lightwhale's flake on machines that cannot fetch
# nixpkgs (ours): `nix flake check --no-build --override-input nixpkgs path:./nix/stand-in-nixpkgs`.
# It builds nothing, and its package names carry no versions (they are placeholders, not
# claims about the pinned revision). It provides exactly the attributes the flake uses, each shaped like
# the real one (outputs, arguments the flake passes, the attributes it reads), with a
# comment naming the nixpkgs file that defines the real one. An attribute the flake uses
# and this file lacks fails the evaluation, and with it `cargo xtask test`.
#
# Checked against nixpkgs (NixOS/nixpkgs, 25.11 era); see the issue notes for the commits.
{
  description = "STAND-IN for nixpkgs: evaluation only, builds nothing";

  outputs = { self }:
    let
      system = "x86_64-linux";

      # A derivation that evaluates like a package and fails if anyone tries to build it.
      drv = name: { outputs ? [ "out" ], attrs ? { } }:
        derivation ({
          inherit name system outputs;
          builder = "/bin/sh";
          args = [ "-c" "echo 'stand-in for nixpkgs: ${name} cannot be built' >&2; exit 1" ];
        } // attrs);
      pkg = name: drv name { };
      argsOf = name: args: builtins.toJSON (builtins.removeAttrs args [ "passthru" "meta" ]);
      requireAll = fname: required: args:
        let missing = builtins.filter (a: !(args ? ${a})) required;
        in if missing == [ ] then args else throw "stand-in: ${fname} needs ${builtins.concatStringsSep ", " missing}";

      # lib/kernel.nix
      kernelLib = {
        yes = { tristate = "y"; optional = false; };
        no = { tristate = "n"; optional = false; };
        module = { tristate = "m"; optional = false; };
        unset = { tristate = null; optional = false; };
        freeform = x: { freeform = x; optional = false; };
        option = x: x // { optional = true; };
      };

      lib = {
        kernel = kernelLib;
        # lib/modules.nix: mkForce = mkOverride 50
        mkForce = content: { _type = "override"; priority = 50; inherit content; };
        # lib/strings.nix: makeBinPath = makeSearchPathOutput "bin" "bin" (the package's
        # `bin` output when it has one, else `out`).
        makeBinPath = ps: builtins.concatStringsSep ":" (map (p: "${p.bin or p}/bin") ps);
      };

      # pkgs/build-support/rust/build-rust-package/default.nix: needs pname (or name),
      # version, src, and one of cargoHash/cargoDeps/cargoVendorDir/cargoLock
      # (cargoLock.lockFile: pkgs/build-support/rust/import-cargo-lock.nix, which reads it).
      buildRustPackage = fname: args:
        let a = requireAll fname [ "pname" "version" "src" "cargoLock" ] args;
        in builtins.seq (builtins.readFile a.cargoLock.lockFile)
          (drv "${a.pname}-${a.version}" {
            attrs = builtins.removeAttrs a [ "pname" "version" "cargoLock" "passthru" "meta" ] // {
              args_json = argsOf fname (builtins.removeAttrs a [ "src" "cargoLock" ]);
            };
          });
      rustPlatform = { buildRustPackage = buildRustPackage "rustPlatform.buildRustPackage"; };

      # pkgs/os-specific/linux/kernel/mainline.nix -> generic.nix (buildLinux): `override`
      # passes structuredExtraConfig through; passthru version and modDirVersion
      # (mainline.nix: modDirVersion = lib.versions.pad 3 version). Output: $out/bzImage,
      # $out/lib/modules/<modDirVersion> (manual-config.nix).
      linuxKernel_6_12 =
        let
          make = over:
            let k = drv "linux" { outputs = [ "out" "dev" ]; attrs = {
                  structured_extra_config = builtins.toJSON (over.structuredExtraConfig or { });
                }; };
            in k // {
              # Placeholders: the real values come from kernels-org.json at the pinned revision.
              version = "6.12.0";
              modDirVersion = "6.12.0";
              override = newOver: make (over // newOver);
            };
        in make { };
    in
    {
      lib = lib;

      legacyPackages.${system} = rec {
        inherit lib rustPlatform;

        # pkgs/top-level/stage.nix: pkgsStatic, a musl package set with isStatic = true.
        pkgsStatic = {
          rustPlatform = { buildRustPackage = buildRustPackage "pkgsStatic.rustPlatform.buildRustPackage"; };
          # pkgs/os-specific/linux/busybox/default.nix (enableStatic from isStatic): bin/busybox
          busybox = pkg "busybox-static";
        };

        # pkgs/top-level/linux-kernels.nix: linuxKernel.kernels.linux_6_12
        linuxKernel.kernels.linux_6_12 = linuxKernel_6_12;

        # pkgs/build-support/closure-info.nix: { rootPaths } -> $out/store-paths, registration
        closureInfo = args: let a = requireAll "closureInfo" [ "rootPaths" ] args;
          in drv "closure-info" { attrs.root_paths = a.rootPaths; };
        # pkgs/build-support/buildenv/default.nix
        buildEnv = args: let a = requireAll "buildEnv" [ "name" "paths" ] args;
          in drv a.name { attrs = { inherit (a) paths; paths_to_link = a.pathsToLink or [ "/" ]; ignore_collisions = a.ignoreCollisions or false; }; };
        # pkgs/build-support/trivial-builders/default.nix
        runCommand = name: env: buildCommand: drv name { attrs = builtins.removeAttrs env [ "passthru" "meta" ] // { inherit buildCommand; }; };
        writeText = name: text: drv name { attrs = { inherit text; }; };
        # pkgs/build-support/mkshell/default.nix: packages, plus env vars as attributes
        mkShell = args: drv "nix-shell" { attrs = builtins.removeAttrs args [ "packages" "passthru" "meta" ] // { packages = args.packages or [ ]; }; };
        # all-packages.nix: makeWrapper = makeShellWrapper (setup hook, make-wrapper.sh)
        makeWrapper = pkg "make-shell-wrapper-hook";

        # Packages of the modules' [nix] lists (modules/*/module.toml); bin/ holds every
        # program because stdenv's move-sbin hook moves sbin/ there.
        bashInteractive = pkg "bash-interactive"; # pkgs/shells/bash/5.nix: bin/bash, bin/sh
        coreutils = pkg "coreutils"; # pkgs/tools/misc/coreutils/default.nix
        findutils = pkg "findutils"; # pkgs/tools/misc/findutils/default.nix
        gnugrep = pkg "gnugrep"; # pkgs/tools/text/gnugrep/default.nix
        gnused = pkg "gnused"; # pkgs/tools/text/gnused/default.nix
        gnutar = pkg "gnutar"; # pkgs/tools/archivers/gnutar/default.nix
        gzip = pkg "gzip"; # pkgs/tools/compression/gzip/default.nix
        xz = drv "xz" { outputs = [ "bin" "out" "dev" "man" "doc" ]; }; # pkgs/tools/compression/xz/default.nix
        util-linux = drv "util-linux" { outputs = [ "bin" "dev" "out" "lib" "man" "login" "mount" "swap" "lastlog" ]; }; # pkgs/by-name/ut/util-linux/package.nix: agetty, mount, losetup in bin
        e2fsprogs = drv "e2fsprogs" { outputs = [ "bin" "dev" "out" "man" "info" ]; }; # pkgs/by-name/e2/e2fsprogs/package.nix: mke2fs, e2fsck in bin
        iproute2 = pkg "iproute2"; # pkgs/by-name/ip/iproute2/package.nix: bin/ip
        procps = pkg "procps"; # pkgs/os-specific/linux/procps-ng/default.nix
        less = pkg "less"; # pkgs/by-name/le/less/package.nix
        kmod = drv "kmod" { outputs = [ "out" "dev" "lib" ]; }; # pkgs/os-specific/linux/kmod/default.nix: bin/modprobe, bin/depmod
        shadow = drv "shadow" { outputs = [ "out" "su" "dev" "man" ]; }; # pkgs/by-name/sh/shadow/package.nix: bin/login, bin/passwd (su in .su)
        sudo = pkg "sudo"; # pkgs/by-name/su/sudo/package.nix: bin/sudo, not setuid in the store
        linux-pam = drv "linux-pam" { outputs = [ "out" "doc" "man" ]; }; # pkgs/by-name/li/linux-pam/package.nix: lib/security/pam_unix.so
        cacert = drv "nss-cacert" { outputs = [ "out" "unbundled" "p11kit" "hashed" ]; }; # pkgs/by-name/ca/cacert/package.nix: etc/ssl/certs/ca-bundle.crt
        docker = pkg "docker"; # pkgs/applications/virtualization/docker/default.nix: bin/docker, bin/dockerd
        docker-compose = pkg "docker-compose"; # pkgs/by-name/do/docker-compose/package.nix: libexec/docker/cli-plugins/docker-compose
        containerd = pkg "containerd"; # pkgs/by-name/co/containerd/package.nix: bin/containerd, bin/containerd-shim-runc-v2
        runc = pkg "runc"; # pkgs/by-name/ru/runc/package.nix: bin/runc
        iptables = drv "iptables" { outputs = [ "out" "lib" "dev" "man" ]; }; # pkgs/os-specific/linux/iptables/default.nix: nftables variant (nftablesCompat ? true)
        apparmor-parser = pkg "apparmor-parser"; # pkgs/by-name/ap/apparmor-parser/package.nix: sbin/apparmor_parser (dockerd runs it to load docker-default)
        dhcpcd = pkg "dhcpcd"; # pkgs/by-name/dh/dhcpcd/package.nix: bin/dhcpcd, reads /etc/dhcpcd.conf
        openssh = pkg "openssh"; # pkgs/tools/networking/openssh/default.nix: bin/sshd, etc/ssh/moduli
        chrony = pkg "chrony"; # pkgs/by-name/ch/chrony/package.nix: bin/chronyd, bin/chronyc (--sbindir=$out/bin)
        wpa_supplicant = pkg "wpa_supplicant"; # pkgs/os-specific/linux/wpa_supplicant/default.nix: bin/wpa_supplicant, bin/wpa_cli (sbin moved to bin)
        iw = drv "iw" { outputs = [ "out" "man" ]; }; # pkgs/by-name/iw/iw/package.nix: bin/iw
        # Firmware sources: the image copies single files out of their lib/firmware.
        linux-firmware = pkg "linux-firmware"; # pkgs/by-name/li/linux-firmware/package.nix: lib/firmware (make install + dedup: plain files, relative symlinks)
        wireless-regdb = pkg "wireless-regdb"; # pkgs/by-name/wi/wireless-regdb/package.nix: lib/firmware/regulatory.db(.p7s)

        # Image assembly and test tools.
        squashfsTools = pkg "squashfs-tools"; # pkgs/by-name/sq/squashfsTools/package.nix: bin/mksquashfs (>= 4.6: -pseudo-override)
        libisoburn = pkg "libisoburn"; # pkgs/by-name/li/libisoburn/package.nix: bin/xorriso
        grub2_efi = pkg "grub"; # all-packages.nix: grub2.override { efiSupport = true; }: bin/grub-mkimage, lib/grub/x86_64-efi
        syslinux = pkg "syslinux"; # pkgs/os-specific/linux/syslinux/default.nix: share/syslinux/{isolinux.bin,ldlinux.c32,isohdpfx.bin}
        mtools = pkg "mtools"; # pkgs/by-name/mt/mtools/package.nix
        dosfstools = pkg "dosfstools"; # pkgs/by-name/do/dosfstools/package.nix: bin/mkfs.vfat
        cpio = pkg "cpio"; # pkgs/by-name/cp/cpio/package.nix
        openssl = drv "openssl" { outputs = [ "bin" "dev" "out" "man" "doc" "debug" ]; }; # pkgs/development/libraries/openssl/default.nix
        qemu = pkg "qemu"; # pkgs/applications/virtualization/qemu/default.nix: bin/qemu-system-x86_64
        OVMF = drv "OVMF" { outputs = [ "out" "fd" ]; }; # pkgs/applications/virtualization/OVMF/default.nix: fd output FV/OVMF_CODE.fd, FV/OVMF_VARS.fd
        curl = drv "curl" { outputs = [ "bin" "dev" "out" "man" "devdoc" ]; }; # pkgs/by-name/cu/curl/package.nix
        mmdebstrap = pkg "mmdebstrap"; # pkgs/by-name/mm/mmdebstrap/package.nix
        debian-archive-keyring = pkg "debian-archive-keyring"; # pkgs/by-name/de/debian-archive-keyring/package.nix
        dpkg = pkg "dpkg"; # pkgs/by-name/dp/dpkg/package.nix
        nix = pkg "nix"; # pkgs/tools/package-management/nix/default.nix
        cargo = pkg "cargo"; # pkgs/development/compilers/rust/cargo.nix
        rustc = pkg "rustc"; # pkgs/development/compilers/rust/rustc.nix
        clippy = pkg "clippy"; # pkgs/development/compilers/rust/clippy.nix
        rustfmt = pkg "rustfmt"; # pkgs/development/compilers/rust/rustfmt.nix
      };
    };
}
