"""Tools the device maker runs at manufacturing (not deployed)."""
