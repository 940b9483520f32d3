"""The console scripts: one thin module per command (setup.cfg names them)."""
