# Start-up: the smallest evaluation, to measure the fixed cost.
1
