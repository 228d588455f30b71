"""`python -m eqprop_cli`: the same as the `eqprop` command."""

from eqprop_cli.cli import main

main()
