"""deeplimit.scaling"""
