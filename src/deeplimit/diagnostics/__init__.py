"""deeplimit.diagnostics"""
