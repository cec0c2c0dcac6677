"""One module per ``cnnlab`` verb. Each is a thin click shell over library code."""
