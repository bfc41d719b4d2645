"""Side-by-side benchmarks and the result tables they print."""
