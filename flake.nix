{
  description = "Lightwhale: an immutable, zero-install Linux server OS that boots into Docker";

  # nixos-25.11; flake.lock pins the revision.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-25.11";

  outputs = { self, nixpkgs }:
    let
      system = "x86_64-linux";
      lw = import ./nix/lightwhale.nix {
        pkgs = nixpkgs.legacyPackages.${system};
        manifest = import ./nix/manifest.nix { };
        nixpkgsRev = nixpkgs.shortRev or "unknown";
        buildId = self.shortRev or self.dirtyShortRev or "unknown";
        # Every timestamp in the image: the last commit's date, as on the Debian path.
        epoch = self.lastModified or 1;
      };
    in
    {
      packages.${system} = {
        inherit (lw) init tools mkimage kernel rootfs initramfs iso;
        default = lw.iso;
      };

      # `nix run .#qemu -- [--disk FILE] [--uefi] [--as-disk] [--memory MB]`
      apps.${system} = rec {
        qemu = {
          type = "app";
          program = "${lw.qemu}/bin/lightwhale-qemu";
          meta.description = "Boot the Lightwhale ISO in QEMU, serial console on this terminal";
        };
        default = qemu;
      };

      checks.${system} = {
        unit-tests = lw.unitTests;
        vm-tests = lw.vmTests;
      };

      devShells.${system}.default = lw.devShell;
    };
}
