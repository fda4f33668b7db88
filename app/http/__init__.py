"""HTTP surface: thin handlers that parse, call one service function and map the result."""
