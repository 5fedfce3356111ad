let
  f = x:
    x + 1;
in
  f "a"
