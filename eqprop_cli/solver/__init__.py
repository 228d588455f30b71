"""The DC equilibrium of a network: layered block coordinate descent and damped Newton
behind one `solve`."""
