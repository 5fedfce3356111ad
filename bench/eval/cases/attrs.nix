# Attribute sets: build 10^4 attributes with listToAttrs, merge sets with
# // repeatedly, mapAttrs over them, and read everything back.
let
  n = 10000;
  names = builtins.genList (i: "attr${toString i}") n;
  a = builtins.listToAttrs (map (name: { inherit name; value = builtins.stringLength name; }) names);
  b = builtins.mapAttrs (name: v: v * 2) a;
  merged = builtins.foldl' (acc: i: acc // { "k${toString i}" = i; }) a (builtins.genList (i: i) 300);
  c = builtins.mapAttrs (name: v: v + 1) (merged // b);
in builtins.foldl' (s: name: s + c.${name}) 0 (builtins.attrNames c)
