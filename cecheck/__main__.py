"""``python -m cecheck``."""

from cecheck.cli import main

main()
