"""Private daemons and topologies for the lab, the tests and the benchmarks; product packages never import it."""
