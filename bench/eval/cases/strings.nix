# String building: interpolation, concatenation, concatStringsSep and
# replaceStrings over 10^5 pieces.
let
  n = 100000;
  pieces = builtins.genList (i: "item-${toString i};") n;
  joined = builtins.concatStringsSep "," pieces;
  acc = builtins.foldl' (s: i: if i - (i / 1000) * 1000 == 0 then "" else s + "x${toString i}") "" (builtins.genList (i: i) n);
  replaced = builtins.replaceStrings [ "item" ";" ] [ "it" "" ] joined;
in [ (builtins.stringLength joined) (builtins.stringLength acc) (builtins.stringLength replaced) (builtins.substring 0 30 replaced) ]
