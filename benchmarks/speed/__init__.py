"""Speed benchmarks (docs/benchmarks.md): each script compares two ways of doing the same work in one invocation,
runs interleaved, and prints the median and spread; `harness` holds what they share."""
