"""``python -m modelkit`` runs the CLI."""

from modelkit.cli.main import main

main()
