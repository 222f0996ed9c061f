"""deeplimit.nn"""
