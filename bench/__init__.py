"""The benchmark harness (`make bench`); see bench/README.md for the method and results."""
