let
  f = { x }: x;
in
  f { x = 1; y = 2; }
