let
  xs = [ 1 2 3 ];
  f = n: builtins.elemAt xs n;
in {
  ok = f 1;
  bad = f 7;
}
