"""deeplimit.sde"""
