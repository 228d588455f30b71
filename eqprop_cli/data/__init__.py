"""Data sets: the bundled mnist-mini (package data in this folder), IDX, .npz and .csv
loading, checksummed downloads, splits."""
