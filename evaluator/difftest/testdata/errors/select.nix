rec {
  a = b + 1;
  b = c.d;
  c = { e = 1; };
}
