"""Service units (rendering) and the service managers that run them (launchd, systemd)."""
