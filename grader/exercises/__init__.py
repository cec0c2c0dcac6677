"""Exercise specs, one module per lecture topic; importing this package registers them all."""
