"""``python -m labsim`` runs the command line."""

from labsim.cli import cli

cli(prog_name="labsim")
