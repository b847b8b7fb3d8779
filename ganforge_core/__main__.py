"""``python -m ganforge_core`` runs the CLI (also under ``torchrun --module``)."""

from ganforge_core.cli import main

main()
