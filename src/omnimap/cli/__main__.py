"""``python -m omnimap.cli`` (and ``torchrun -m omnimap.cli``): the command line."""

from omnimap.cli.main import main

main()
