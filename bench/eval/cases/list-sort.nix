# Build a list of 10^5 pseudo-random integers and sort it with a Nix
# comparator, then sum a few elements.
let
  n = 100000;
  xs = builtins.genList (i: (i * 7919 + 13) - ((i * 7919 + 13) / 100003) * 100003) n;
  sorted = builtins.sort (a: b: a < b) xs;
in [ (builtins.length sorted) (builtins.head sorted) (builtins.elemAt sorted 50000) (builtins.elemAt sorted (n - 1)) ]
