# Lightwhale's derivations on the Nix path. Nix supplies the inputs (packages, kernel,
# boot loaders, tools); the image itself is assembled by `lightwhale-mkimage`, the same
# Rust code `cargo xtask iso` runs on the Debian path, so both paths produce one format.
#
# Every nixpkgs attribute used here is listed, with the nixpkgs file that defines it, in
# nix/stand-in-nixpkgs/flake.nix (the stand-in the project's tests evaluate this against).
{ pkgs, manifest, nixpkgsRev, buildId, epoch }:
let
  inherit (pkgs) lib;
  version = (builtins.fromTOML (builtins.readFile ../Cargo.toml)).workspace.package.version;

  # The workspace without the Nix files, docs and CI: editing the README or docs/ rebuilds nothing.
  root = toString ../.;
  kept = [ "Cargo.toml" "Cargo.lock" "rustfmt.toml" ".cargo" "types" "nocloud" "init" "image" "tools" "compose-apps" "xtask" "vm-tests" "tests" "modules" ];
  src = builtins.path {
    name = "lightwhale-source";
    path = ../.;
    filter = path: _type:
      let rel = builtins.substring (builtins.stringLength root + 1) 4096 (toString path);
      in builtins.elem (builtins.head (builtins.split "/" rel)) kept;
  };
  # Every crate comes from Cargo.lock's checksums; no hash to update by hand.
  cargoLock.lockFile = ../Cargo.lock;

  # A nixpkgs attribute from a module's [nix] list ("docker", "pkgsStatic.busybox").
  attr = path:
    builtins.foldl'
      (set: name: set.${name} or (throw "a module.toml [nix] list names `${path}`, which nixpkgs does not have"))
      pkgs
      (builtins.filter builtins.isString (builtins.split "\\." path));

  # One workspace binary, built with the release profile (LTO, panic=abort) of Cargo.toml.
  workspaceBinary = { rustPlatform ? pkgs.rustPlatform, pname, package, extra ? { } }:
    rustPlatform.buildRustPackage ({
      inherit pname version src cargoLock;
      cargoBuildFlags = [ "-p" package ];
      # The workspace's tests run once, in checks.unit-tests.
      doCheck = false;
    } // extra);

  # PID 1: static, like the Debian path's +crt-static build (musl here).
  init = workspaceBinary {
    rustPlatform = pkgs.pkgsStatic.rustPlatform;
    pname = "lightwhale-init";
    package = "lightwhale-init";
  };

  # The administrator's commands (lightwhale, setup-hostname, setup-wifi), static too.
  tools = workspaceBinary {
    rustPlatform = pkgs.pkgsStatic.rustPlatform;
    pname = "lightwhale-tools";
    package = "lightwhale-tools";
  };

  mkimageTools = [ pkgs.squashfsTools pkgs.libisoburn pkgs.grub2_efi pkgs.mtools pkgs.dosfstools pkgs.xz pkgs.kmod ];
  mkimage = workspaceBinary {
    pname = "lightwhale-mkimage";
    package = "lightwhale-image";
    extra = {
      nativeBuildInputs = [ pkgs.makeWrapper ];
      postInstall = ''
        wrapProgram $out/bin/lightwhale-mkimage --prefix PATH : ${lib.makeBinPath mkimageTools}
      '';
    };
  };

  kernel = pkgs.linuxKernel.kernels.linux_6_12.override {
    structuredExtraConfig = import ./kernel-config.nix { inherit lib; };
  };
  release = kernel.modDirVersion;

  # The root tree's packages. Collisions (coreutils and procps both ship `uptime`) go to
  # the package listed first, so the order of the modules' lists decides.
  env = pkgs.buildEnv {
    name = "lightwhale-env";
    paths = [ tools ] ++ map attr manifest.nixPackages;
    pathsToLink = [ "/bin" ];
    ignoreCollisions = true;
  };
  linkSpec = spec:
    let m = builtins.match "([^:]+):(.+)" spec;
    in if m == null then throw "a [nix] link must be `attribute:path`, not `${spec}`"
       else { package = attr (builtins.elemAt m 0); path = builtins.elemAt m 1; };
  # The modules' workspace binaries (module.toml `[workspace] binaries`), linked where the
  # Debian path copies them: /usr/sbin/<name> (lightwhale_image::install::workspace_binary_path).
  workspaceBinaries = builtins.listToAttrs (map (name: {
    inherit name;
    value = workspaceBinary { pname = name; package = name; };
  }) manifest.workspaceBinaries);
  binaryLinks = builtins.listToAttrs (map (name: {
    name = "usr/sbin/${name}";
    value = "${workspaceBinaries.${name}}/bin/${name}";
  }) manifest.workspaceBinaries);
  links = builtins.mapAttrs (_: spec: let l = linkSpec spec; in "${l.package}/${l.path}") manifest.nixLinks // binaryLinks;
  # Where the kept drivers' firmware comes from: only the files they ask for are copied
  # into the tree (image/src/firmware.rs), so these packages stay out of the closure.
  firmwareDirs = map (name: "${attr name}/lib/firmware") manifest.nixFirmware;
  linkPackages = map (spec: (linkSpec spec).package) (builtins.attrValues manifest.nixLinks) ++ builtins.attrValues workspaceBinaries;
  # The store cannot hold setuid files; the image gets a setuid copy.
  setuid = { "usr/bin/sudo" = "${pkgs.sudo}/bin/sudo"; };
  closure = pkgs.closureInfo { rootPaths = [ env pkgs.linux-pam pkgs.sudo ] ++ linkPackages; };

  mkimageCmd = "lightwhale-mkimage --epoch ${toString epoch}";

  rootfs = pkgs.runCommand "lightwhale-rootfs-${version}" { nativeBuildInputs = [ mkimage ]; } ''
    ${mkimageCmd} nix-root \
      --store-paths ${closure}/store-paths \
      --env ${env} \
      --links ${pkgs.writeText "lightwhale-links.json" (builtins.toJSON links)} \
      --kernel-modules ${kernel}/lib/modules --release ${release} \
      --pam ${pkgs.linux-pam} \
      ${builtins.concatStringsSep " " (map (dir: "--firmware ${dir}") firmwareDirs)} \
      ${builtins.concatStringsSep " " (builtins.attrValues (builtins.mapAttrs (path: file: "--setuid ${path}=${file}") setuid))} \
      --modules ${src}/modules \
      --version ${version} --build-id ${buildId} --nixpkgs ${nixpkgsRev} \
      --tree tree --pseudo-out pseudo
    mkdir -p $out
    ${mkimageCmd} squashfs --tree tree --out-dir $out --pseudo-file pseudo --all-root
  '';

  initramfs = pkgs.runCommand "lightwhale-initramfs-${version}" { nativeBuildInputs = [ mkimage ]; } ''
    mkdir -p $out
    ${mkimageCmd} initramfs --init ${init}/bin/lightwhale-init \
      --module-tree ${kernel}/lib/modules/${release} --release ${release} \
      --modules ${src}/modules --out $out/initramfs.img
  '';

  # Secure Boot is a property of the Debian-path image (Debian's signed shim, GRUB and
  # kernel). This ISO carries the unsigned GRUB loader and a kernel no one has signed.
  iso = pkgs.runCommand "lightwhale-iso-${version}" { nativeBuildInputs = [ mkimage ]; } ''
    mkdir -p $out/build work
    ${mkimageCmd} iso \
      --kernel ${kernel}/bzImage --initramfs ${initramfs}/initramfs.img --rootfs-img ${rootfs}/rootfs.img \
      --version ${version} --build-id ${buildId} \
      --isolinux-bin ${pkgs.syslinux}/share/syslinux/isolinux.bin \
      --ldlinux-c32 ${pkgs.syslinux}/share/syslinux/ldlinux.c32 \
      --isohdpfx-bin ${pkgs.syslinux}/share/syslinux/isohdpfx.bin \
      --grub-efi-dir ${pkgs.grub2_efi}/lib/grub/x86_64-efi \
      --work-dir work --out $out/lightwhale.iso
    # The layout the VM tests read (LIGHTWHALE_OUT): the ISO, and what it boots under build/.
    ln -s ${kernel}/bzImage $out/build/vmlinuz
    ln -s ${initramfs}/initramfs.img $out/build/initramfs.img
    ln -s ${rootfs}/rootfs.img $out/build/rootfs.img
  '';

  ovmf = {
    LIGHTWHALE_OVMF_CODE = "${pkgs.OVMF.fd}/FV/OVMF_CODE.fd";
    LIGHTWHALE_OVMF_VARS = "${pkgs.OVMF.fd}/FV/OVMF_VARS.fd";
  };

  # `nix run .#qemu`: the Rust runner `cargo xtask qemu` uses, pointed at this ISO.
  qemu = workspaceBinary {
    pname = "lightwhale-qemu";
    package = "lightwhale-vm-tests";
    extra = {
      cargoBuildFlags = [ "-p" "lightwhale-vm-tests" "--bin" "lightwhale-qemu" ];
      nativeBuildInputs = [ pkgs.makeWrapper ];
      postInstall = ''
        wrapProgram $out/bin/lightwhale-qemu \
          --set-default LIGHTWHALE_ISO ${iso}/lightwhale.iso \
          --set-default LIGHTWHALE_OVMF_CODE ${ovmf.LIGHTWHALE_OVMF_CODE} \
          --set-default LIGHTWHALE_OVMF_VARS ${ovmf.LIGHTWHALE_OVMF_VARS} \
          --prefix PATH : ${lib.makeBinPath [ pkgs.qemu pkgs.libisoburn ]}
      '';
    };
  };

  # What the host-side tests call (cpio cross-check, depmod, mkfs and e2fsck on loop
  # devices, sfdisk).
  testTools = [ pkgs.cpio pkgs.kmod pkgs.xz pkgs.e2fsprogs pkgs.util-linux pkgs.openssl ];

  unitTests = pkgs.rustPlatform.buildRustPackage {
    pname = "lightwhale-unit-tests";
    inherit version src cargoLock;
    cargoBuildFlags = [ "--workspace" ];
    # Tests that need root, loop devices or a Nix store of their own stay #[ignore]d in the
    # build sandbox; `cargo xtask test` runs them on the Debian path.
    cargoTestFlags = [ "--workspace" ];
    nativeBuildInputs = testTools;
  };

  # The VM scenarios against the Nix-built ISO, as nixosTest runs its VMs: QEMU from
  # nixpkgs, on a builder with KVM.
  vmTests = pkgs.rustPlatform.buildRustPackage (ovmf // {
    pname = "lightwhale-vm-tests";
    inherit version src cargoLock;
    cargoBuildFlags = [ "-p" "lightwhale-vm-tests" "--tests" ];
    cargoTestFlags = [ "-p" "lightwhale-vm-tests" "--tests" ];
    # The Secure Boot scenarios need Debian's signed shim, GRUB and kernel, which this ISO
    # does not carry (see `iso` above).
    checkFlags = [ "--ignored" "--test-threads=1" "--nocapture" "--skip" "secure_boot" ];
    nativeBuildInputs = [ pkgs.qemu pkgs.openssh pkgs.curl ] ++ testTools;
    LIGHTWHALE_OUT = iso;
    requiredSystemFeatures = [ "kvm" ];
    dontInstall = true;
    postCheck = "touch $out";
  });

  devShell = pkgs.mkShell (ovmf // {
    packages = [
      pkgs.cargo pkgs.rustc pkgs.clippy pkgs.rustfmt
      pkgs.mmdebstrap pkgs.debian-archive-keyring pkgs.dpkg
      pkgs.qemu pkgs.openssh pkgs.curl pkgs.nix
    ] ++ mkimageTools ++ testTools;
  });
in
{
  inherit init tools mkimage kernel rootfs initramfs iso qemu unitTests vmTests devShell;
}
