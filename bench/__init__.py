"""The benchmark harness (`make bench`); see README.md for results and how to read them."""
