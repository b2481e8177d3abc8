"""The ``lsdebm`` command line: one module per subcommand (see :mod:`lsdebm.cli.main`)."""
