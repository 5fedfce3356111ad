# Deep foldl': a strict left fold over 10^6 elements.
builtins.foldl' (acc: x: acc + x * 2) 0 (builtins.genList (i: i) 1000000)
