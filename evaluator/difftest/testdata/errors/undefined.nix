{
  a = 1;
  b = "${toString a}";
}
