"""``python -m labsim`` and the ``labsim`` command: :func:`main`."""

from labsim.gc_pace import start_up_frozen


def main() -> None:
    """Run the command line, loaded with the garbage collector paused and what it loaded
    frozen (:func:`labsim.gc_pace.start_up_frozen`)."""
    with start_up_frozen():
        from labsim.cli import cli
    cli(prog_name="labsim")


if __name__ == "__main__":
    main()
