"""deeplimit.data"""
