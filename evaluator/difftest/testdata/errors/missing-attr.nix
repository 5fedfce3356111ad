let
  f = x:
    x.a + 1;
  g = y: f y;
in
  {
    r = g { b = 2; };
  }
