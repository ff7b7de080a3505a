# The pure part of the Nix path: what the modules' manifests (modules/*/module.toml) ask
# for, read with builtins.fromTOML. It takes no nixpkgs, so `cargo xtask test` evaluates
# it with plain `nix-instantiate --eval --strict --json` and compares the result with the
# Rust builder's reading of the same files (image/tests/nix.rs).
{ modulesDir ? ../modules }:
let
  entries = builtins.readDir modulesDir;
  isModule = name: entries.${name} == "directory" && builtins.pathExists (modulesDir + "/${name}/module.toml");
  names = builtins.sort builtins.lessThan (builtins.filter isModule (builtins.attrNames entries));
  read = name: builtins.fromTOML (builtins.readFile (modulesDir + "/${name}/module.toml"));
  concatMap = f: list: builtins.concatLists (map f list);

  module = name:
    let t = read name;
    in {
      inherit name;
      description = t.description;
      nixPackages = (t.nix or { }).packages or [ ];
      nixLinks = (t.nix or { }).links or { };
      nixFirmware = (t.nix or { }).firmware or [ ];
      users = map (u: {
        inherit (u) name password;
        groups = u.groups or [ ];
        shell = u.shell or "/bin/sh";
      }) (t.users or [ ]);
      groups = map (g: { inherit (g) name; gid = g.gid or null; }) (t.groups or [ ]);
      systemUsers = map (u: {
        inherit (u) name home;
        uid = u.uid or null;
        comment = u.comment or "";
      }) (t.system_users or [ ]);
      initramfsKernelModules = (t.initramfs or { }).kernel_modules or [ ];
      dropKernelModules = (t.prune or { }).drop_kernel_modules or [ ];
      requireKernelModules = (t.prune or { }).require_kernel_modules or [ ];
      workspaceBinaries = (t.workspace or { }).binaries or [ ];
    };
  modules = map module names;
  all = field: concatMap (m: m.${field}) modules;
  unique = list: builtins.foldl' (acc: x: if builtins.elem x acc then acc else acc ++ [ x ]) [ ] list;
in
{
  inherit modules;
  moduleNames = names;
  # nixpkgs attribute paths ("docker", "pkgsStatic.busybox"), in module order.
  nixPackages = unique (all "nixPackages");
  # nixpkgs attributes whose lib/firmware the kept drivers' firmware is copied from.
  nixFirmware = unique (all "nixFirmware");
  # Image path -> "attribute:path inside its output".
  nixLinks = builtins.foldl' (acc: m: acc // m.nixLinks) { } modules;
  users = all "users";
  groups = all "groups";
  systemUsers = all "systemUsers";
  initramfsKernelModules = all "initramfsKernelModules";
  dropKernelModules = all "dropKernelModules";
  requireKernelModules = all "requireKernelModules";
  # Binaries built from this repository, installed as /usr/sbin/<name>.
  workspaceBinaries = all "workspaceBinaries";
  # Every module must say what it needs from nixpkgs, or the Nix image would lack it.
  modulesWithoutNixPackages =
    map (m: m.name) (builtins.filter (m: m.nixPackages == [ ] && m.nixFirmware == [ ]) modules);
}
