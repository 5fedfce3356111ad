let
  check = x:
    assert x > 2;
    x;
in map check [ 3 4 1 ]
