"""Learning: the loss at the readout, the optimiser, Equilibrium Propagation training,
evaluation, the exact gradient check and fine-tuning."""
