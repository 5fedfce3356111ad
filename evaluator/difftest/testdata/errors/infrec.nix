let
  x = { a = y.b; };
  y = { b = x.a; };
in x.a
