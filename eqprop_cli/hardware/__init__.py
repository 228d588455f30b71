"""Towards a chip: SPICE export and ngspice runs, conductance maps and quantisation,
Monte Carlo over device variation."""
