"""Device I-V models: each kind answers the same questions for all its elements at once."""
