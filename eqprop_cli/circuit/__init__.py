"""The circuit description: SI units, parameter tables, the TOML spec, the compiled graph and
the network of arrays that the solvers work on."""
