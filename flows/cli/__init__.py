"""The ``mloop`` command: ``flows.cli.app`` declares it (``main``), the modules beside it do
the work. Light at import: the heavy libraries load inside the commands."""
